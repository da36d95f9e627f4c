"""The Optuna study behind a sweep: storage, sampler, pruner, and counting its trials.

`n_trials` is the study's total. A trial counts once it is COMPLETE or PRUNED; FAIL trials
are retried. A finite space ends the study sooner: once every point is COMPLETE or PRUNED
no trial is left to run, and a point is never run twice. Every process working on a study
(threads of one sweep, several sweeps on one storage, other machines) follows the same
rules, so together they finish at n_trials, or at the space's size.
"""

import logging
import os
import socket
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import optuna
import sqlalchemy
from optuna.trial import TrialState

from src.errors import UserError
from src.tracking.store import sqlite_file
from src.tuning.search_space import SearchSpace, point

log = logging.getLogger(__name__)
# Heartbeats are "experimental" and "meant for Study.optimize": we drive them ourselves, from
# each trial's job (src/tuning/trial_link.py), which is what they need.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")

SAMPLERS = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "gp": optuna.samplers.GPSampler,
    "qmc": optuna.samplers.QMCSampler,
    "grid": optuna.samplers.GridSampler,
}
PRUNERS = {
    "median": optuna.pruners.MedianPruner,
    # keeps trials above the given percentile of earlier ones (25: the top quarter goes on)
    "percentile": optuna.pruners.PercentilePruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "none": optuna.pruners.NopPruner,
}  # and "patient": another pruner that holds off while a trial still improves
DONE = (TrialState.COMPLETE, TrialState.PRUNED)
IN_FLIGHT = (TrialState.RUNNING, TrialState.WAITING)
# What a study's database raises when it goes away (server down, connection cut): the
# sweep then stops with one line, and the study keeps every trial told so far.
STORAGE_ERRORS = (optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError)


# A trial told FAIL without being run (a repeat of a point, or one too many for the study):
# it is no job's outcome, so a parent run's end does not count it
NOT_RUN = "not_run"


# What a worker sees when another one is creating the same new study database: SQLite's and
# PostgreSQL's words for a table made, or a schema version row written, a moment earlier
CREATION_RACE = ("already exists", "UNIQUE constraint failed", "duplicate key value")


def default_storage(sweeps_dir: Path) -> str:
    return f"sqlite:///{(Path(sweeps_dir) / 'optuna.db').resolve()}"


def open_storage(url: str, heartbeat_interval: int, grace_period: int):
    """An RDB storage (SQLite file, PostgreSQL, ...) with heartbeats, so a trial whose
    worker died is noticed and failed; or a journal file (`*.log`, no heartbeats)."""
    _check_driver(url)
    try:
        if url.endswith((".log", ".journal")):
            path = Path(url.removeprefix("journal:")).resolve()
            path.parent.mkdir(parents=True, exist_ok=True)
            backend = optuna.storages.journal.JournalFileBackend(str(path))
            return optuna.storages.JournalStorage(backend)
        if (database := sqlite_file(url)) is not None:
            database.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(5):
            try:
                return optuna.storages.RDBStorage(
                    url,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    heartbeat_stale_trial_callback=_note_stale,
                    engine_kwargs={"pool_pre_ping": True} if not url.startswith("sqlite") else None,
                )
            except Exception as error:  # noqa: BLE001
                # Two workers creating a new database at once: one finds the other's tables
                # half made, or its schema version row already written. The next try sees
                # them whole.
                if not any(m in str(error) for m in CREATION_RACE) or attempt == 4:
                    raise
                time.sleep(0.5)
    except Exception as error:  # noqa: BLE001 - drivers fail in many ways
        reason = str(error).strip().splitlines()[0]
        raise UserError(
            f"hydra.sweeper.storage={redact(url)} cannot be opened ({reason})"
        ) from None


def redact(url: str) -> str:
    """The storage URL as it may be shown and logged: any password masked. (Better still,
    keep passwords out of URLs: libpq reads PGPASSWORD and ~/.pgpass.)"""
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:  # a journal file's path
        return url


def make_sampler(config: dict, space: SearchSpace, grid: dict[str, list]):
    """`{name: tpe, seed: 0, ...}`: the rest are the sampler's own arguments. `grid`: every
    value of each finite key (search_space.grid), what the grid sampler walks through."""
    options = dict(config)
    name = options.pop("name", "tpe")
    if name not in SAMPLERS:
        raise UserError(f"hydra.sweeper.sampler.name={name!r}; expected one of {list(SAMPLERS)}")
    if name == "grid":
        if continuous := [k for k in space.distributions if k not in grid]:
            raise UserError(
                f"hydra.sweeper.sampler.name=grid needs a finite value list for every key: "
                f"{continuous[0]} is a continuous interval; use choice(...) or range(...)"
            )
        options["search_space"] = grid
    try:
        return SAMPLERS[name](**options)
    except TypeError as error:
        raise UserError(f"hydra.sweeper.sampler: {error}") from None


def make_pruner(config: dict | None):
    """`{name: median, n_startup_trials: 5, ...}`: the rest are the pruner's own arguments."""
    options = dict(config or {"name": "none"})
    name = options.pop("name", "median")
    if name == "patient":  # {name: patient, patience: N, wrapped: {a pruner}}
        wrapped = make_pruner(options.pop("wrapped", None))
        try:
            return optuna.pruners.PatientPruner(wrapped, **options)
        except TypeError as error:
            raise UserError(f"hydra.sweeper.pruner: {error}") from None
    if name not in PRUNERS:
        raise UserError(f"hydra.sweeper.pruner.name={name!r}; expected one of {list(PRUNERS)}")
    try:
        return PRUNERS[name](**options)
    except TypeError as error:
        raise UserError(f"hydra.sweeper.pruner: {error}") from None


def counts(study: optuna.Study) -> dict[str, int]:
    trials = study.get_trials(deepcopy=False)
    return {
        "done": sum(t.state in DONE for t in trials),
        "in_flight": sum(t.state in IN_FLIGHT for t in trials),
        "failed": sum(t.state == TrialState.FAIL for t in trials),
    }


def is_surplus(study: optuna.Study, trial: optuna.Trial, n_trials: int) -> bool:
    """After a race between workers: are there n_trials counting trials before this one?"""
    earlier = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.number < trial.number and (t.state in DONE or t.state in IN_FLIGHT)
    ]
    return len(earlier) >= n_trials


def duplicate_of(study: optuna.Study, trial: optuna.Trial, params: dict, space) -> int | None:
    """The number of another counting trial at the same point of the space, if any."""
    here = point(params, space)
    if here is None:  # conditional keys drawn: no point of the (top-level) space
        return None
    for other in study.get_trials(deepcopy=False):
        counting = other.state in DONE or other.state in IN_FLIGHT
        if counting and other.number != trial.number and point(other.params, space) == here:
            return other.number
    return None


def tried_points(study: optuna.Study, space: SearchSpace) -> tuple[set, set, set]:
    """The points of the space that are done (COMPLETE or PRUNED); taken (done or running);
    and failed (run, and failed). A failed point that is not taken is tried again, once no
    untried point is left."""
    done, taken, failed = set(), set(), set()
    for trial in study.get_trials(deepcopy=False):
        here = point(trial.params, space)
        if here is None or trial.user_attrs.get(NOT_RUN):
            continue
        if trial.state in DONE or trial.state in IN_FLIGHT:
            taken.add(here)
        if trial.state in DONE:
            done.add(here)
        elif trial.state == TrialState.FAIL:
            failed.add(here)
    return done, taken, failed


def outcomes(study: optuna.Study) -> list[str]:
    """Each run trial's end as an MLflow run status (FINISHED, FAILED), for its parent run;
    trials never run (NOT_RUN) and those still running are left out."""
    ended = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "FINISHED"}
    return [
        ended.get(t.state, "FAILED")
        for t in study.get_trials(deepcopy=False, states=(*DONE, TrialState.FAIL))
        if not t.user_attrs.get(NOT_RUN)
    ]


def worker_host() -> str:
    """This machine's name as trials record it. IMGSWEEP_WORKER_HOST overrides it where
    workers on different machines share a host name (containers started with one
    --hostname): a trial's worker pid must never be looked up on the wrong machine."""
    return os.environ.get("IMGSWEEP_WORKER_HOST") or socket.gethostname()


WORKER = f"{worker_host()}:{os.getpid()}"


def record_heartbeat(study: optuna.Study, trial_id: int) -> None:
    """A first heartbeat as soon as a trial is asked for: Optuna never counts a trial
    without one as stale, so a worker dying before its job's first beat would otherwise
    leave the trial RUNNING for good."""
    if _heartbeats(study):
        study._storage.record_heartbeat(trial_id)


def fail_orphans(study: optuna.Study) -> dict[int, str]:
    """Fail trials left RUNNING by dead workers: those of this host whose process is gone
    (at once), and any whose heartbeat went stale (after the storage's grace period, through
    Optuna's fail_stale_trials). Returns the trials this process failed, and why: when
    several workers find the same orphan, one of them fails it, and only that one acts on it."""
    storage, host = study._storage, worker_host()
    failed = {}  # trial number: why
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner_host, _, pid = trial.user_attrs.get("worker", "").rpartition(":")
        dead = owner_host == host and pid.isdigit() and not _alive(int(pid))
        if dead and _claim_failure(storage, trial._trial_id, "its worker died"):
            failed[trial.number] = "its worker died"
    _stale.numbers = stale = []  # _note_stale: the trials fail_stale_trials fails just now
    try:
        optuna.storages.fail_stale_trials(study)
    finally:
        _stale.numbers = None
    for number in stale:
        failed.setdefault(number, "its worker stopped sending heartbeats")
    if failed:
        log.warning(f"trials {sorted(failed)} were left running by a worker that died: marked FAIL")
    return failed


_stale = threading.local()


def _note_stale(study: optuna.Study, trial) -> None:
    """The storage's callback for each trial fail_stale_trials failed in this process (it
    calls it for the trials whose update it won, not for those another worker failed)."""
    numbers = getattr(_stale, "numbers", None)
    if numbers is not None:
        numbers.append(trial.number)


def _claim_failure(storage, trial_id: int, why: str) -> bool:
    """Mark the trial FAIL unless another process got there first (the database serialises
    the two updates; the second finds the trial finished)."""
    try:
        storage.set_trial_user_attr(trial_id, "error", why)
        return storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False


def seed_for_trial(sampler, seed: int | None, number: int) -> None:
    """Tie the sampler's random draws to (seed, trial number) rather than to the process:
    parallel workers with one seed then propose different values, and a sweep stays
    reproducible whichever worker runs which trial. Samplers without a random state of
    their own (grid, QMC, CMA-ES re-seed per trial already) are left alone."""
    if seed is None:
        return
    for holder in (
        sampler,
        getattr(sampler, "_random_sampler", None),
        getattr(sampler, "_independent_sampler", None),
    ):
        state = getattr(getattr(holder, "_rng", None), "rng", None)
        if isinstance(state, np.random.RandomState):
            state.seed(np.random.SeedSequence([seed, number]).generate_state(1)[0])


def _heartbeats(study: optuna.Study) -> bool:
    """Does the study's storage keep heartbeats? (A study wraps its RDBStorage in a cache,
    so this asks the storage rather than checking its type.)"""
    interval = getattr(study._storage, "get_heartbeat_interval", lambda: None)
    return interval() is not None


def _check_driver(url: str) -> None:
    """The database driver SQLAlchemy picks for this URL is installed (`postgresql://`:
    psycopg, or psycopg2 before SQLAlchemy 2.1; the `postgres` extra brings both)."""
    try:
        dialect = sqlalchemy.engine.make_url(url).get_dialect()
    except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError):
        return  # a journal file, or a URL the storage itself will refuse
    try:
        dialect.import_dbapi()
    except ImportError as error:
        raise UserError(
            f"hydra.sweeper.storage={redact(url)} needs the database driver {error.name}: "
            "pip install -e '.[postgres]'"
        ) from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
