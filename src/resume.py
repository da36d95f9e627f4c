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

from src.classifiers.checkpoint import load_checkpoint
from src.classifiers.distributed import Ranks
from src.data.prepare import PreparedData
from src.errors import UserError
from src.modes import mode_of
from src.run_spec import RunSpec
from src.tracking import mlflow_run

log = logging.getLogger("imgsweep")
# as the user's shell set it: MLflow's set_tracking_uri later sets the variable itself
SHELL_TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI")


def resume_state(spec: RunSpec, uri: str, data: PreparedData) -> dict:
    """The checkpoint to continue from, after checking the run matches this command."""
    run_id, settings, mode = spec.resume, spec.mode.refinement, mode_of(spec.mode.name)
    run = mlflow_run.find_run(uri, run_id)
    params, tags = run.data.params, run.data.tags
    if not mode.refines:
        raise UserError(f"resume= continues a refinement; classifier={spec.mode.name} has none")
    logged = spec.tracking.config["classifier"]  # as the run's params hold them
    expected = {
        "classifier.name": spec.mode.name,
        "model.name": spec.model.name,
        "resolution.size": str(spec.image.size),
        "seed": str(spec.compute.seed),
        "data.classes": ",".join(data.classes),
        "data.fingerprint": data.fingerprint,
    }
    differences = [
        f"{k}: the run has {params.get(k)!r}, this command {v!r}"
        for k, v in expected.items()
        if params.get(k) != v
    ]
    if differences:
        raise UserError(f"resume={run_id} refused, the run differs: " + "; ".join(differences))
    changed = [
        f"classifier.{k}: the run has {params.get(f'classifier.{k}')}, this command {v}"
        for k, v in ((k, _param(logged[k])) for k in mode.resume_checks)
        if params.get(f"classifier.{k}") not in (None, v)
    ]
    if changed:
        raise UserError(
            f"resume={run_id} refused: a resumed run keeps its optimiser's state, so "
            f"{'; '.join(changed)} cannot apply (start a new run to change it)"
        )
    checkpoint = Path(tags.get("checkpoint", ""))
    if not checkpoint.is_file():
        raise UserError(f"resume={run_id}: its checkpoint {checkpoint} is not there")
    state = load_checkpoint(checkpoint)
    log.info(f"resuming run {run_id} after epoch {state['epoch']}")
    epochs = params.get("classifier.epochs")
    if epochs is not None and epochs != str(settings.epochs):
        log.info(
            f"classifier.epochs {epochs} → {settings.epochs} from epoch "
            f"{state['epoch'] + 1}: the schedule is stretched from there"
        )
    return {**state, "path": str(checkpoint), "epochs_before": epochs}


def _param(value) -> str:
    """A config value as MLflow holds it in the run's params."""
    return "null" if value is None else str(value)


def checkpoint_path(checkpoint_dir: Path, run_id: str) -> Path:
    return Path(checkpoint_dir).resolve() / run_id / "last.pt"


def what_is_kept(spec: RunSpec, run_id: str, ranks: Ranks) -> str:
    """After the tracking server went away: what survives locally, and how to go on."""
    checkpoint = checkpoint_path(spec.checkpoint_dir, run_id)
    if spec.mode.refinement is None or not checkpoint.is_file():
        return "nothing trained is lost: run the same command again once the server is back"
    epoch = load_checkpoint(checkpoint)["epoch"]
    return (
        f"the training up to epoch {epoch} is kept in {checkpoint}; once the server is back, "
        f"continue with: {resume_command(run_id, ranks, spec.tracking.where)}"
    )


def interrupted_message(spec: RunSpec, run_id: str) -> str:
    """The one line Ctrl-C prints: how far the run got, and the command that goes on."""
    checkpoint = checkpoint_path(spec.checkpoint_dir, run_id)
    if spec.mode.refinement is None:
        return (
            f"interrupted; run {run_id} is marked KILLED (an SVM run starts again from the cache)"
        )
    if not checkpoint.is_file():
        return (
            f"interrupted before the first epoch finished; run {run_id} is marked KILLED: "
            "run the same command again"
        )
    epoch = load_checkpoint(checkpoint)["epoch"]
    command = resume_command(run_id, Ranks(), spec.tracking.where)
    return f"interrupted after epoch {epoch}; continue with: {command}"


def resume_command(run_id: str, ranks: Ranks, where: tuple[str, ...] = ()) -> str:
    """`python -m src.run resume=<run id>`: the run's own overrides come back from the run.
    Only where to find the run (`where`: the overrides that said so) is said again, when it
    is not the default store."""
    start = f"torchrun --nproc_per_node={ranks.local_world_size}" if ranks.distributed else "python"
    server = SHELL_TRACKING_URI  # where the run is, if not in the config
    words = [f"MLFLOW_TRACKING_URI={server}"] if server and not where else []
    words += [start, "-m src.run", *map(shlex.quote, where), f"resume={run_id}"]
    return " ".join(words)
