"""Continuing an interrupted refinement: `python -m src.run resume=<run id>`.

The run's own command line comes back first (src/resume_command.py). The run is reopened
only once its params show it was made by the same command on the same data, and its
checkpoint is there; a refusal changes nothing. Optimiser settings cannot change under a
resumed optimiser's state, so a different one is refused; more epochs extend the run, and
the schedule is stretched from the epoch it resumes at (recorded as a tag). After Ctrl-C or
a tracking outage, `interrupted_message` / `what_is_kept` give the command that goes on.
"""

import logging
import os
import shlex
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from src.classifiers.checkpoint import load_checkpoint
from src.classifiers.distributed import Ranks
from src.data.prepare import PreparedData
from src.errors import UserError
from src.overrides import as_typed
from src.tracking import mlflow_run

log = logging.getLogger("imgsweep")
# as the user's shell set it: MLflow's set_tracking_uri later sets the variable itself
SHELL_TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI")


def resume_state(cfg: DictConfig, uri: str, data: PreparedData) -> dict:
    """The checkpoint to continue from, after checking the run matches this command."""
    run = mlflow_run.find_run(uri, cfg.resume)
    params, tags = run.data.params, run.data.tags
    if cfg.classifier.name not in ("dnn", "svm_dnn_refined"):
        raise UserError(
            f"resume= continues a refinement; classifier={cfg.classifier.name} has none"
        )
    expected = {
        "classifier.name": cfg.classifier.name,
        "model.name": cfg.model.name,
        "resolution.size": str(cfg.resolution.size),
        "seed": str(cfg.seed),
        "data.classes": ",".join(data.classes),
        "data.fingerprint": data.fingerprint,
    }
    differences = [
        f"{k}: the run has {params.get(k)!r}, this command {v!r}"
        for k, v in expected.items()
        if params.get(k) != v
    ]
    if differences:
        raise UserError(f"resume={cfg.resume} refused, the run differs: " + "; ".join(differences))
    changed = [
        f"classifier.{k}: the run has {params.get(f'classifier.{k}')}, this command {v}"
        for k, v in ((k, _param(cfg.classifier[k])) for k in OPTIMISER_SETTINGS)
        if params.get(f"classifier.{k}") not in (None, v)
    ]
    if changed:
        raise UserError(
            f"resume={cfg.resume} refused: a resumed run keeps its optimiser's state, so "
            f"{'; '.join(changed)} cannot apply (start a new run to change it)"
        )
    checkpoint = Path(tags.get("checkpoint", ""))
    if not checkpoint.is_file():
        raise UserError(f"resume={cfg.resume}: its checkpoint {checkpoint} is not there")
    state = load_checkpoint(checkpoint)
    log.info(f"resuming run {cfg.resume} after epoch {state['epoch']}")
    epochs = params.get("classifier.epochs")
    if epochs is not None and epochs != str(cfg.classifier.epochs):
        log.info(
            f"classifier.epochs {epochs} → {cfg.classifier.epochs} from epoch "
            f"{state['epoch'] + 1}: the schedule is stretched from there"
        )
    return {**state, "path": str(checkpoint), "epochs_before": epochs}


# what the optimiser's saved state already holds; `epochs` may change (it extends the run)
OPTIMISER_SETTINGS = ("lr", "momentum", "weight_decay", "schedule", "milestones", "batch_size")


def _param(value) -> str:
    """A config value as MLflow holds it in the run's params."""
    value = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    return "null" if value is None else str(value)


def checkpoint_path(cfg: DictConfig, run_id: str) -> Path:
    return Path(cfg.paths.checkpoint_dir).resolve() / run_id / "last.pt"


def what_is_kept(cfg: DictConfig, run_id: str, ranks: Ranks) -> str:
    """After the tracking server went away: what survives locally, and how to go on."""
    checkpoint = checkpoint_path(cfg, run_id)
    if cfg.classifier.name == "svm" or not checkpoint.is_file():
        return "nothing trained is lost: run the same command again once the server is back"
    epoch = load_checkpoint(checkpoint)["epoch"]
    return (
        f"the training up to epoch {epoch} is kept in {checkpoint}; once the server is back, "
        f"continue with: {resume_command(run_id, ranks)}"
    )


def interrupted_message(cfg: DictConfig, run_id: str) -> str:
    """The one line Ctrl-C prints: how far the run got, and the command that goes on."""
    checkpoint = checkpoint_path(cfg, run_id)
    if cfg.classifier.name == "svm":
        return (
            f"interrupted; run {run_id} is marked KILLED (an SVM run starts again from the cache)"
        )
    if not checkpoint.is_file():
        return (
            f"interrupted before the first epoch finished; run {run_id} is marked KILLED: "
            "run the same command again"
        )
    epoch = load_checkpoint(checkpoint)["epoch"]
    return f"interrupted after epoch {epoch}; continue with: {resume_command(run_id, Ranks())}"


def resume_command(run_id: str, ranks: Ranks) -> str:
    """`python -m src.run resume=<run id>`: the run's own overrides come back from the run.
    Only where to find the run is said again, when it is not the default store."""
    typed = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    where = [as_typed(o) for o in typed if o.startswith(("tracking.uri=", "paths.mlruns_dir="))]
    start = f"torchrun --nproc_per_node={ranks.local_world_size}" if ranks.distributed else "python"
    server = SHELL_TRACKING_URI  # where the run is, if not in the config
    words = [f"MLFLOW_TRACKING_URI={server}"] if server and not where else []
    words += [start, "-m src.run", *map(shlex.quote, where), f"resume={run_id}"]
    return " ".join(words)
