"""Continuing an interrupted refinement: `python -m src.run classifier=dnn resume=<run id>`.

The run is reopened only once its params show it was made by the same command on the same
data, and its checkpoint is there; a refusal changes nothing. When the tracking server goes
away mid-run, `what_is_kept` says where the training is kept and the command that goes on.
"""

import logging
import os
import shlex
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from src.classifiers.checkpoint import load_checkpoint
from src.classifiers.distributed import Ranks
from src.data.prepare import PreparedData
from src.errors import UserError
from src.overrides import as_typed
from src.tracking import mlflow_run

log = logging.getLogger("imgsweep")


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
    checkpoint = Path(tags.get("checkpoint", ""))
    if not checkpoint.is_file():
        raise UserError(f"resume={cfg.resume}: its checkpoint {checkpoint} is not there")
    state = load_checkpoint(checkpoint)
    log.info(f"resuming run {cfg.resume} after epoch {state['epoch']}")
    return {**state, "path": str(checkpoint)}


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


def resume_command(run_id: str, ranks: Ranks) -> str:
    typed = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    kept = [as_typed(o) for o in typed if not o.startswith("resume=")]
    start = f"torchrun --nproc_per_node={ranks.local_world_size}" if ranks.distributed else "python"
    server = os.environ.get("MLFLOW_TRACKING_URI")  # where the run is, if not in the config
    words = [f"MLFLOW_TRACKING_URI={server}"] if server else []
    words += [start, "-m src.run", *map(shlex.quote, kept), f"resume={run_id}"]
    return " ".join(words)
