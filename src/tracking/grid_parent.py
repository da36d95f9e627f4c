"""A plain Hydra grid's parent run (`python -m src.run -m key=a,b`): it ends once, when the
grid's last job ends.

Hydra runs a grid's jobs one after another (its basic launcher) or side by side (joblib),
each in a process that knows only its own number. So each job notes its end in the sweep
folder (`.job_ends/<launch>/<number>.json`: its status and its parent run), and the job that
finds every job of its launch ended ends the parent runs, as parent_status says. A launch is
one `python -m src.run -m ...`: Hydra writes the folder's multirun.yaml as it starts one,
and that file tells how many jobs it runs. Ctrl-C stops the whole grid: the interrupted job
ends the parent runs at once, KILLED.
"""

import contextlib
import json
import logging
import os
from pathlib import Path

from src.tracking import mlflow_run
from src.tracking.parent_runs import find_or_create_parent, parent_status

log = logging.getLogger(__name__)
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
OPTUNA_SWEEPER = "hydra_plugins.imgsweep_optuna.sweeper.OptunaSweeper"  # its sweep ends its parent
_joined: dict = {}  # this job's parent run: {"uri", "parent"}, once grid_parent found it


def grid_parent(uri: str, experiment_id: str, folder: str) -> str:
    """The parent run of this job's grid in its experiment (the first job creates it),
    noted as this job's for when it ends."""
    parent = find_or_create_parent(
        uri, experiment_id, f"grid:{folder}", f"grid {Path(folder).name}", {"sweep.kind": "grid"}
    )
    _joined.update(uri=uri, parent=parent)
    return parent


@contextlib.contextmanager
def grid_job():
    """Around a job (as a decorator of it): its end noted, whichever way it ends; nothing
    outside a plain Hydra grid."""
    status = "FAILED"
    try:
        yield
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        joined = dict(_joined)
        _joined.clear()
        if (job := _grid_job()) is not None:
            _end(*job, status, joined)


def _end(folder: Path, number: int, status: str, joined: dict) -> None:
    try:
        for (uri, parent), ends in record_end(folder, number, status, joined).items():
            mlflow_run.finish_parent(uri, parent, parent_status(ends))
    except Exception as error:  # noqa: BLE001 - the job's own outcome comes first
        log.warning(f"could not end the grid's parent run: {error}")


def record_end(folder: Path, number: int, status: str, joined: dict) -> dict:
    """Note that job `number` of the grid in `folder` ended with `status` (FINISHED, FAILED,
    KILLED) under the parent in `joined` (none if it failed before finding it). Returns
    {(uri, parent): [its jobs' ends]} for the parents to end now: when this job is the
    launch's last (or was interrupted), to exactly one caller; else {}."""
    sizes = batch_sizes(folder)
    ledger = folder / ".job_ends" / _launch(folder)
    ledger.mkdir(parents=True, exist_ok=True)
    entry = {"status": status, "uri": joined.get("uri"), "parent": joined.get("parent")}
    _write_atomically(ledger / f"{number}.json", json.dumps(entry))
    ended = [json.loads(p.read_text()) for p in ledger.glob("*.json")]
    if sizes is None:  # how many jobs the launch has is unknown: end this job's parent now
        last = True
    else:
        # the basic sweeper stops after a batch in which a job failed
        boundaries = [sum(sizes[: i + 1]) for i in range(len(sizes))]
        failed = any(e["status"] != "FINISHED" for e in ended)
        last = len(ended) == boundaries[-1] or (len(ended) in boundaries and failed)
        last = (last or status == "KILLED") and _claim(ledger / "ended")
    if not last:
        return {}
    parents = {}
    for e in ended:
        if e["parent"] is not None and (sizes is not None or e["parent"] == entry["parent"]):
            parents.setdefault((e["uri"], e["parent"]), []).append(e["status"])
    return parents


def batch_sizes(folder: Path) -> list[int] | None:
    """How many jobs each of the launch's batches has, as Hydra's basic sweeper splits its
    command line (multirun.yaml, which it writes before the first job); None where that
    cannot be told (another sweeper, a file that is not there)."""
    try:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

        sweeper, overrides = _launch_overrides(folder)
        if sweeper.get("_target_") != BASIC_SWEEPER:
            return None
        batches = BasicSweeper.split_arguments(overrides, sweeper.get("max_batch_size"))
    except Exception:  # noqa: BLE001 - unknown: each job then ends its parent as it ends
        return None
    return [len(batch) for batch in batches]


def swept_keys(folder: Path) -> list[str]:
    """The keys the launch's command line sweeps (`model=resnet18,resnet34`): what tells its
    jobs apart, for their run names; [] where that cannot be told."""
    try:
        _, overrides = _launch_overrides(folder)
    except Exception:  # noqa: BLE001 - a name without the values is still a name
        return []
    return [o.get_key_element() for o in overrides if o.is_sweep_override()]


def _launch_overrides(folder: Path):
    """(hydra.sweeper, the parsed command line) of the launch, from its multirun.yaml."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    config = OmegaConf.load(folder / "multirun.yaml").hydra
    params = config.sweeper.get("params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()] + list(config.overrides.task)
    parser = OverridesParser.create(config_loader=_config_loader())
    return config.sweeper, parser.parse_overrides(arguments)


def _grid_job() -> tuple[Path, int] | None:
    """(sweep folder, job number) in a job of a multirun other than the Optuna sweeper's
    (whose sweep ends its parent itself); None in a single run, or a torchrun rank > 0."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or os.environ.get("RANK", "0") != "0":
        return None
    hydra = HydraConfig.get()
    if hydra.mode != RunMode.MULTIRUN or hydra.sweeper.get("_target_") == OPTUNA_SWEEPER:
        return None
    return Path(hydra.sweep.dir).resolve(), int(hydra.job.num)


def _launch(folder: Path) -> str:
    """This launch of the grid: when Hydra wrote its multirun.yaml (a rerun into the same
    folder writes it again)."""
    with contextlib.suppress(OSError):
        return str((folder / "multirun.yaml").stat().st_mtime_ns)
    return "unknown"


def _claim(marker: Path) -> bool:
    """True for the one caller that creates `marker` (atomic in the file system)."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def _write_atomically(path: Path, text: str) -> None:
    """Readers see the whole file or none of it."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(text)
    os.replace(partial, path)


def _config_loader():
    """Hydra's config loader where this process has one: `glob(...)` sweeps need it."""
    from hydra.core.global_hydra import GlobalHydra

    hydra = GlobalHydra.instance()
    return hydra.config_loader() if hydra.is_initialized() else None
