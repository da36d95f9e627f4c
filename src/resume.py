"""Continuing an interrupted refinement: `python -m src.run resume=<run id>`.

The run's own command line comes back first (src/resume_command.py). The run is reopened
only once its config and data show the resumed training would be the one it started, and
its checkpoint is there (a KILLED or FAILED run keeps one; a FINISHED run's is removed,
`remove_checkpoint`); a refusal changes nothing. What may differ is one list,
`MAY_CHANGE`: more epochs extend the run (the schedule is stretched from the epoch it
resumes at, recorded as a tag), and where and how the run is recorded, stored and fed. Any
other setting would change the result, so a difference in it is refused in one line.
After Ctrl-C or a tracking outage, `interrupted_message` / `what_is_kept` say what the
checkpoint holds and give the command that goes on.
"""

import fnmatch
import logging
import os
import shlex
import shutil
from pathlib import Path

from src.classifiers.checkpoint import load_checkpoint
from src.classifiers.distributed import Ranks
from src.data.prepare import PreparedData
from src.errors import UserError
from src.modes import mode_of
from src.run_spec import RunSpec
from src.tracking import mlflow_run
from src.tracking.mlflow_run import flatten

log = logging.getLogger("imgsweep")
# as the user's shell set it: MLflow's set_tracking_uri later sets the variable itself
SHELL_TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI")


# The config keys a resume may change (`*`: a whole group). Every other key of the run's
# config decides what the training does, so it is compared and any difference refused.
MAY_CHANGE = (
    "classifier.epochs",  # more epochs extend the run; the schedule is stretched from there
    "num_workers",  # decoding processes: each image's augmentation is seeded by its own key
    "tracking.*",  # where and how the run is recorded
    "paths.*",  # where data, caches and checkpoints are kept
    "dataset.root",  # where the images are: data.fingerprint compares the images themselves
    "trial.*",  # the sweep trial the run was, if it was one
    "resume",  # the run id itself (null when the run started)
    "label_issues",  # a step after the model is made: it changes nothing of the model
)


def resume_state(spec: RunSpec, uri: str, data: PreparedData, precision: str) -> dict:
    """The checkpoint to continue from, after checking that this command (its config, with
    `precision` resolved as the run logged it) would train as the run did."""
    run_id, settings, mode = spec.resume, spec.mode.refinement, mode_of(spec.mode.name)
    run = mlflow_run.find_run(uri, run_id)
    params, tags = run.data.params, run.data.tags
    if not mode.refines:
        raise UserError(f"resume= continues a refinement; classifier={spec.mode.name} has none")
    config = {**spec.tracking.config, "precision": precision}  # as src/pipeline.py logs it
    now = {
        **{key: _param(value) for key, value in flatten(config).items()},
        "data.classes": ",".join(data.classes),
        "data.fingerprint": data.fingerprint,
    }
    if differences := config_differences(params, now):
        raise UserError(
            f"resume={run_id} refused, the run differs: {'; '.join(differences)} (a resume "
            f"may change only {', '.join(k for k in MAY_CHANGE if k != 'resume')}: start a "
            "new run for the rest)"
        )
    checkpoint = Path(tags.get("checkpoint", ""))
    if not checkpoint.is_file() and run.info.status == "FINISHED":
        raise UserError(
            f"resume={run_id}: the run FINISHED, and a finished run keeps no checkpoint "
            "(only a KILLED or FAILED one does): start a new run for more epochs"
        )
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


def config_differences(params: dict[str, str], now: dict[str, str]) -> list[str]:
    """Each value of `now` (params as this command would log them) outside MAY_CHANGE that
    the run's `params` do not hold, as `key: the run has ..., this command ...`. A setting
    the run does not have (added to the config after it) agrees at null, its off value, so
    a new key does not refuse every older run."""
    return [
        f"{key}: the run has {repr(params[key]) if key in params else 'no such setting'}, "
        f"this command {value!r}"
        for key, value in now.items()
        if not may_change(key) and params.get(key, "null") != value
    ]


def may_change(key: str) -> bool:
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in MAY_CHANGE)


def _param(value) -> str:
    """A config value as MLflow holds it in the run's params."""
    return "null" if value is None else str(value)


def checkpoint_path(checkpoint_dir: Path, run_id: str) -> Path:
    return Path(checkpoint_dir).resolve() / run_id / "last.pt"


def remove_checkpoint(checkpoint_dir: Path, run_id: str) -> None:
    """A FINISHED run's checkpoint (its folder): only a KILLED or FAILED run is resumed, and
    a refinement's checkpoint holds three copies of the network (weights, best weights,
    momentum): hundreds of MB each run would otherwise leave behind."""
    shutil.rmtree(checkpoint_path(checkpoint_dir, run_id).parent, ignore_errors=True)


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
    """The one line Ctrl-C prints: the last epoch its checkpoint keeps (an epoch's line is
    shown only once it is kept: src/classifiers/dnn.py), and the command that goes on."""
    checkpoint = checkpoint_path(spec.checkpoint_dir, run_id)
    if spec.mode.refinement is None:
        return (
            f"interrupted; run {run_id} is marked KILLED (an SVM run starts again from the cache)"
        )
    if not checkpoint.is_file():
        return (
            f"interrupted before any epoch was kept; run {run_id} is marked KILLED: run the "
            "same command again"
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
