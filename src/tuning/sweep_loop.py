"""The sweep itself: ask Optuna for a trial, launch it as a Hydra job, tell the result.

Each of `n_jobs` threads runs that loop on its own, so a slow trial never holds the others
back (no batches). The study's storage is the only shared state: several sweep processes,
on one machine or many, cooperate on one study by the same rules (see src/tuning/study.py).

If the study's database or the tracking server goes away, the sweep stops with one line:
every trial told so far stays in the study, the interrupted ones are failed by whoever
opens it next (their worker is gone, or their heartbeat stops), and the same command
continues the study.
"""

import logging
import math
import os
import threading
import time
from pathlib import Path

import optuna
from hydra.core.utils import JobStatus
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from optuna.trial import TrialState

from src.errors import UserError, exit_with_error
from src.overrides import override, prepare_overrides
from src.tracking import mlflow_run
from src.tracking.parent_runs import find_or_create_parent
from src.tuning.search_space import describe, parse_search_space, suggest
from src.tuning.study import (
    STORAGE_ERRORS,
    WORKER,
    counts,
    default_storage,
    duplicate_of,
    fail_orphans,
    is_surplus,
    make_pruner,
    make_sampler,
    open_storage,
    record_heartbeat,
    redact,
    seed_for_trial,
)
from src.tuning.sweep_report import refresh_parent, summary

log = logging.getLogger("imgsweep.sweep")
POLL = 2.0  # s between looks at trials other workers are running


def run_sweep(sweeper, arguments: list[str]):
    try:
        return _run_sweep(sweeper, arguments)
    except UserError as error:  # one line, as src.run prints its own errors
        exit_with_error(error)


def _run_sweep(sweeper, arguments: list[str]):
    settings, cfg = sweeper.settings, sweeper.config
    choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
    study_name = settings["study_name"] or choices.get("sweep") or "sweep"
    storage_url = settings["storage"] or default_storage(Path(cfg.paths.sweeps_dir))
    n_trials = int(settings["n_trials"])
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError(
            "a sweep does not run under torchrun: start one sweep process per machine or GPU "
            "(CUDA_VISIBLE_DEVICES=i), all with the same hydra.sweeper.storage"
        )

    space = parse_search_space(
        settings["params"] or {}, prepare_overrides(arguments), lambda key: _known(cfg, key)
    )
    grid = {k: list(d.choices) for k, d in space.distributions.items() if hasattr(d, "choices")}
    sampler = make_sampler(settings["sampler"] or {}, grid)
    storage = open_storage(storage_url, settings["heartbeat_interval"], settings["grace_period"])
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        sampler=sampler,
        pruner=make_pruner(settings["pruner"]),
        direction=settings["direction"],
        load_if_exists=True,
    )
    if study.direction.name.lower() != settings["direction"]:
        raise UserError(f"study {study_name} maximises/minimises otherwise: {study.direction.name}")
    if int(settings["n_jobs"]) > 1 and type(sweeper.launcher).__name__ == "BasicLauncher":
        raise UserError(
            "hydra.sweeper.n_jobs > 1 needs a launcher that runs jobs in other processes, "
            "e.g. hydra/launcher=joblib"
        )

    uri = mlflow_run.resolve_uri(cfg.tracking.uri, Path.cwd())
    mlflow_run.configure_retries(cfg.tracking.retry_seconds)
    mlflow_run.check_reachable(uri)
    experiment = mlflow_run.experiment_id(uri, _experiment_name(cfg))
    parent = find_or_create_parent(
        uri,
        experiment,
        f"optuna:{study_name}",
        study_name,
        {"sweep.study": study_name, "sweep.storage": redact(storage_url), "sweep.kind": "optuna"},
    )
    _fail_orphans(study, uri)
    state = counts(study)
    log.info(
        f"study {study_name} ({redact(storage_url)}): {state['done']} of {n_trials} trials done"
        + (f", {state['in_flight']} running elsewhere" if state["in_flight"] else "")
        + f"; MLflow parent run {parent}"
    )
    if space.fixed:
        log.info("every trial runs with: " + " ".join(space.fixed))
    context = {
        "sweeper": sweeper,
        "study": study,
        "space": space,
        "n_trials": n_trials,
        "seed": (settings["sampler"] or {}).get("seed"),
        "uri": uri,
        "parent": parent,
        "max_failures": math.floor(settings["max_failure_rate"] * n_trials),
        "failures": [0],
        "lock": threading.Lock(),
        "stop": threading.Event(),
        "errors": [],
        "lost": None,  # "storage" or "tracking": the one that went away
    }
    # One trial at a time runs in this (main) thread, so Ctrl-C reaches the job itself and its
    # MLflow run ends KILLED; more run in threads, each launching jobs in other processes.
    n_jobs = int(settings["n_jobs"])
    threads = [
        threading.Thread(target=_worker, args=(context,), daemon=True)
        for _ in range(n_jobs if n_jobs > 1 else 0)
    ]
    status = "FINISHED"
    try:
        if not threads:
            _worker(context)
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=0.5)  # stay responsive to Ctrl-C
    except KeyboardInterrupt:
        context["stop"].set()
        status = "KILLED"
        _fail_unfinished(study, "interrupted (Ctrl-C)")
        raise
    finally:
        if context["errors"]:
            status = "FAILED"
        lost = context["lost"]  # then only what is still there is used
        if lost != "tracking":
            mlflow_run.finish_parent(uri, parent, status)
        if lost is None:
            _refresh(uri, parent, study)
        if lost != "storage":
            links = {
                "runs table": mlflow_run.runs_url(uri, experiment),
                "parent run": mlflow_run.runs_url(uri, experiment, parent),
            }
            print(summary(study, space.fixed, links))
    if context["errors"]:
        raise UserError(context["errors"][0])
    return study.best_trial if counts(study)["done"] else None


def _worker(context: dict) -> None:
    try:
        _trials(context)
    except STORAGE_ERRORS as error:
        storage = redact(_storage_url(context["sweeper"]))
        _lost(context, "storage", f"the study's storage {storage}", error)
    except Exception as error:
        if mlflow_run.server_unreachable(context["uri"]):
            _lost(context, "tracking", f"the MLflow tracking server {context['uri']}", error)
            return
        log.exception("the sweep's driver failed")  # a bug in the driver: stop, and say so
        context["errors"].append(f"the sweep's driver failed: {error!r}")
        context["stop"].set()


def _lost(context: dict, kind: str, what: str, error: Exception) -> None:
    """A database or server the sweep needs went away: stop cleanly, in one line."""
    reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else repr(error)
    context["errors"].append(
        f"{what} stopped answering ({reason}); the study keeps every trial finished so far: "
        "run the same command again once it is back to continue"
    )
    context["lost"] = context["lost"] or kind
    context["stop"].set()


def _fail_orphans(study: optuna.Study, uri: str) -> None:
    """fail_orphans, and the MLflow runs of the trials it failed marked so too."""
    for number in fail_orphans(study):
        trial = study.get_trials(deepcopy=False)[number]
        if run_id := trial.user_attrs.get("mlflow_run_id"):
            client = MlflowClient(uri)
            client.set_tag(run_id, "optuna.state", "FAIL")
            client.set_tag(run_id, "error", "its worker died")
            client.set_terminated(run_id, "KILLED")


def _trials(context: dict) -> None:
    study, n_trials = context["study"], context["n_trials"]
    while not context["stop"].is_set():
        _fail_orphans(study, context["uri"])
        state = counts(study)
        if state["done"] >= n_trials:
            return
        if state["done"] + state["in_flight"] >= n_trials:
            time.sleep(POLL)  # the last trials run elsewhere; they may still fail
            continue
        with context["lock"]:  # one ask at a time in this process: its sampler is shared
            trial, params = _ask(context)
        if trial is None:
            continue
        _run_trial(context, trial, params)
        if context["failures"][0] > context["max_failures"]:
            context["errors"].append(
                f"{context['failures'][0]} trials failed, more than max_failure_rate allows "
                f"({context['max_failures']} of {n_trials}); see the FAIL trials' errors above"
            )
            context["stop"].set()


def _ask(context: dict):
    study, space = context["study"], context["space"]
    trial = study.ask()
    record_heartbeat(study, trial._trial_id)
    trial.set_user_attr("worker", WORKER)
    if is_surplus(study, trial, context["n_trials"]):  # another worker asked at the same time
        trial.set_user_attr("error", "surplus: the study was full when this worker asked")
        study.tell(trial, state=TrialState.FAIL)
        return None, None
    seed_for_trial(study.sampler, context["seed"], trial.number)
    params = suggest(trial, space)
    twin = duplicate_of(study, trial, params)
    if twin is not None and not _exhausted(space, study):
        trial.set_user_attr("error", f"same parameters as trial {twin}; not run twice")
        study.tell(trial, state=TrialState.FAIL)
        return None, None
    return trial, params


def _run_trial(context: dict, trial: optuna.Trial, params: dict) -> None:
    sweeper, study = context["sweeper"], context["study"]
    link = [
        override("trial.study", study.study_name),
        override("trial.storage", _storage_url(sweeper)),
        f"trial.number={trial.number}",
        override("trial.parent_run_id", context["parent"]),
    ]
    job = [*context["space"].fixed, *(override(k, v) for k, v in params.items()), *link]
    described = describe(params, context["space"].fixed)
    log.info(f"trial {trial.number}: {described}")
    try:
        (result,) = sweeper.launcher.launch([job], initial_job_idx=trial.number)
        value = result.return_value if result.status == JobStatus.COMPLETED else None
        error = None if result.status == JobStatus.COMPLETED else result._return_value
    except Exception as launch_error:  # noqa: BLE001 - a trial's failure is not the sweep's
        value, error = None, launch_error
    if isinstance(error, optuna.TrialPruned):
        _tell(study, trial, state=TrialState.PRUNED)
        outcome = f"pruned ({error})"
    elif error is None and value is not None and math.isfinite(value):
        _tell(study, trial, float(value))
        outcome = f"{value:.4f}"
    else:
        message = str(error) if error is not None else f"returned {value!r}, not a number"
        trial.set_user_attr("error", message[:2000])
        _tell(study, trial, state=TrialState.FAIL)
        context["failures"][0] += 1
        outcome = f"FAILED: {message.splitlines()[0] if message else type(error).__name__}"
    log.info(f"trial {trial.number}: {outcome}")
    frozen = study.get_trials(deepcopy=False)[trial.number]
    _tag_child(context["uri"], frozen)
    _refresh(context["uri"], context["parent"], study)


def _refresh(uri: str, parent: str, study: optuna.Study) -> None:
    try:
        refresh_parent(uri, parent, study)
    except Exception as report_error:  # noqa: BLE001 - figures must not stop a sweep
        if mlflow_run.server_unreachable(uri):
            raise
        log.warning(f"could not refresh the sweep's figures: {report_error}")


def _tell(study: optuna.Study, trial: optuna.Trial, value=None, state=None) -> None:
    """study.tell, where a grid sampler that ran out of points does not stop us: it calls
    `study.stop()`, which works only inside `study.optimize`. The result is stored anyway
    (Optuna stores it in a `finally`); this sweep's own loop decides when to stop."""
    try:
        study.tell(trial, value, state=state)
    except RuntimeError as error:
        if "Study.stop" not in str(error):
            raise


def _tag_child(uri: str, trial) -> None:
    run_id = trial.user_attrs.get("mlflow_run_id")
    if run_id:
        client = MlflowClient(uri)
        client.set_tag(run_id, "optuna.state", trial.state.name)
        if trial.state == TrialState.PRUNED:
            client.set_tag(run_id, "optuna.pruned", "true")


def _fail_unfinished(study: optuna.Study, reason: str) -> None:
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.user_attrs.get("worker") == WORKER:
            optuna.Trial(study, trial._trial_id).set_user_attr("error", reason)
            study.tell(trial.number, state=TrialState.FAIL)


def _exhausted(space, study) -> bool:
    """A finite space whose every point was tried: repeats are then unavoidable."""
    sizes = [
        len(d.choices) if hasattr(d, "choices") else math.inf for d in space.distributions.values()
    ]
    return math.prod(sizes) <= len(study.get_trials(deepcopy=False))


def _known(cfg, key: str) -> bool:
    groups = set(OmegaConf.to_container(cfg.hydra.runtime.choices))
    return key in groups or OmegaConf.select(cfg, key, default="\0missing") != "\0missing"


def _experiment_name(cfg) -> str:
    root = cfg.dataset.get("root")
    return cfg.tracking.experiment or cfg.dataset.name or Path(str(root)).expanduser().name


def _storage_url(sweeper) -> str:
    settings, cfg = sweeper.settings, sweeper.config
    return settings["storage"] or default_storage(Path(cfg.paths.sweeps_dir))
