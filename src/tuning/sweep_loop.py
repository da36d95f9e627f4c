"""The sweep itself: ask Optuna for a trial, launch it as a Hydra job, tell the result.

Each of `n_jobs` threads runs that loop on its own, so a slow trial never holds the others
back (no batches). The study's storage is the only shared state: several sweep processes,
on one machine or many, cooperate on one study by the same rules (see src/tuning/study.py).

A finite space (no continuous interval) ends the sweep once every point has been run,
with one line saying so, even below n_trials: a point is never run twice.

The parent run ends when no trial of the study runs any longer: the last sweep process
working on a study ends it (parent_status), the others leave it running.

If the study's database or the tracking server goes away, the sweep stops with one line:
every trial told so far stays in the study, the interrupted ones are failed by whoever
opens it next (their worker is gone, or their heartbeat stops), and the same command
continues the study.
"""

import contextlib
import logging
import math
import os
import threading
import time
from itertools import product
from pathlib import Path

import optuna
from hydra.core.utils import JobStatus
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from src.errors import UserError, exit_with_error
from src.modes import MODES
from src.overrides import override, prepare_overrides
from src.tracking import mlflow_run
from src.tracking.parent_runs import find_or_create_parent, parent_status
from src.tracking.runs_view import save_runs_view, swept_params
from src.tracking.study_models import keep_best_model
from src.tuning.budget import Budget, parse_budget, process_start, shown
from src.tuning.finish import finish_winner
from src.tuning.search_space import (
    describe,
    grid,
    parse_search_space,
    point,
    size,
    suggest,
    untried_point,
)
from src.tuning.study import (
    NOT_RUN,
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
    outcomes,
    record_heartbeat,
    redact,
    seed_for_trial,
    tried_points,
)
from src.tuning.sweep_report import default_point, refresh_parent, summary

log = logging.getLogger("imgsweep.sweep")
POLL = 2.0  # s between looks at trials other workers are running


def run_sweep(sweeper, arguments: list[str], register=None):
    """`register(client, run, name, alias)`: how hydra.sweeper.finish registers the champion
    (src/deployment/registry.py's, given by the entry point: deployment is not below tuning)."""
    try:
        return _run_sweep(sweeper, arguments, register)
    except UserError as error:  # one line, as src.run prints its own errors
        exit_with_error(error)


def _run_sweep(sweeper, arguments: list[str], register):
    settings, cfg = sweeper.settings, sweeper.config
    choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
    study_name = settings["study_name"] or choices.get("sweep") or "sweep"
    storage_url = settings["storage"] or default_storage(Path(cfg.paths.sweeps_dir))
    seconds = parse_budget(settings.get("budget"))
    if settings["n_trials"] is None and seconds is None:
        raise UserError("hydra.sweeper.n_trials=null needs a hydra.sweeper.budget (e.g. 30m)")
    n_trials = math.inf if settings["n_trials"] is None else int(settings["n_trials"])
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError(
            "a sweep does not run under torchrun: start one sweep process per machine or GPU "
            "(CUDA_VISIBLE_DEVICES=i), all with the same hydra.sweeper.storage"
        )

    space = parse_search_space(
        settings["params"] or {},
        prepare_overrides(arguments),
        lambda key: _known(cfg, key),
        settings.get("conditional") or {},
    )
    sampler = make_sampler(settings["sampler"] or {}, space, grid(space))
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
    in_processes(sweeper.launcher, int(settings["n_jobs"]))

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
    view = _save_runs_view(cfg, uri, experiment, study_name, space)  # while the server answers
    context = {
        "sweeper": sweeper,
        "study": study,
        "space": space,
        "n_trials": n_trials,
        "seed": (settings["sampler"] or {}).get("seed"),
        "uri": uri,
        "parent": parent,
        "max_failures": math.inf  # no count: the budget alone ends the sweep
        if n_trials == math.inf
        else math.floor(settings["max_failure_rate"] * n_trials),
        "budget": Budget(
            study,
            seconds,
            finish=bool(settings.get("finish")),
            mode_of=lambda params: space_mode(cfg, params),
            start=process_start(),
        )
        if seconds
        else None,
        "failures": [0],
        "lock": threading.Lock(),
        "stop": threading.Event(),
        "errors": [],
        "lost": None,  # "storage" or "tracking": the one that went away
        "exhausted": False,  # every point of a finite space run (said once)
    }
    stopped = None  # KILLED or FAILED: the sweep itself stopped
    finished = []  # what the champion's run and registration say (hydra.sweeper.finish)
    try:
        _fail_orphans(study, uri)
        state = counts(study)
        log.info(
            f"study {study_name} ({redact(storage_url)}): {state['done']}"
            + ("" if n_trials == math.inf else f" of {n_trials}")
            + " trials done"
            + (f", {state['in_flight']} running elsewhere" if state["in_flight"] else "")
            + f"; MLflow parent run {parent}"
            + (budget_line(context["budget"]) if context["budget"] else "")
        )
        if space.fixed:
            log.info("every trial runs with: " + " ".join(space.fixed))
        if settings.get("first"):
            queue_first(study, space, settings["first"])
        _run_workers(context, int(settings["n_jobs"]))
        if settings.get("finish") and not context["errors"] and has_complete(study):
            finished = finish_winner(
                study,
                space.fixed,
                space_mode(cfg, study.best_trial.params),
                uri,
                experiment,
                parent,
                settings.get("register_name") or _experiment_name(cfg),
                register,
            )
    except KeyboardInterrupt:
        context["stop"].set()
        stopped = "KILLED"
        _fail_unfinished(study, "interrupted (Ctrl-C)")
        raise
    except BaseException:
        stopped = "FAILED"
        raise
    finally:
        if context["errors"]:
            stopped = stopped or "FAILED"
        lost = context["lost"]  # then only what is still there is used
        if context["budget"] and lost != "storage":
            _spend(context)
        if lost is None:
            _refresh(uri, parent, study)
        if lost != "tracking":
            _end_parent(context, stopped)
        if lost != "storage":
            links = {
                "runs table": mlflow_run.runs_url(uri, experiment, view=view),
                "parent run": mlflow_run.runs_url(uri, experiment, parent),
            }
            default = default_point(list(space.distributions), CONFIG_YAML)
            print(summary(study, space.fixed, links, mlflow_run.ui_command(uri), default))
            for line in finished:
                print(line)
            if budget := context["budget"]:
                spent = budget.spent()
                print(
                    f"budget {shown(budget.seconds)}: {shown(spent)} spent "
                    f"({spent / budget.seconds:.0%}), {shown(max(budget.left(), 0))} left"
                )
    if context["errors"]:
        raise UserError(context["errors"][0])
    return study.best_trial if has_complete(study) else None


def has_complete(study: optuna.Study) -> bool:
    """Whether the study has a best trial (a study of pruned trials only has none)."""
    return bool(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def in_processes(launcher, n_jobs: int) -> None:
    """Each of the sweeper's n_jobs threads launches one trial at a time, so the joblib
    launcher needs n_jobs processes. Its default n_jobs=-1 counts the cores this process
    may use, and on one (a one-CPU container, a pinned test worker) joblib runs the trial in
    the calling thread: two pipelines at once in one process, sharing Hydra's and MLflow's
    global state (a trial failed with an empty error, another's data vanished)."""
    joblib_settings = getattr(launcher, "joblib", None)
    if n_jobs > 1 and joblib_settings is not None:
        from joblib import effective_n_jobs

        if effective_n_jobs(joblib_settings.get("n_jobs", -1)) < n_jobs:
            joblib_settings["n_jobs"] = n_jobs


def _run_workers(context: dict, n_jobs: int) -> None:
    """One trial at a time runs in this (main) thread, so Ctrl-C reaches the job itself and
    its MLflow run ends KILLED; more run in threads, each launching jobs in other processes."""
    if n_jobs <= 1:
        _worker(context)
        return
    threads = [
        threading.Thread(target=_worker, args=(context,), daemon=True) for _ in range(n_jobs)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(timeout=0.5)  # stay responsive to Ctrl-C


def _end_parent(context: dict, stopped: str | None) -> None:
    """End the parent run, unless trials of its study still run in other sweep processes:
    the last of those to stop ends it, once all its trials have."""
    study, uri, parent = context["study"], context["uri"], context["parent"]
    if context["lost"] == "storage":  # who else still runs cannot be asked
        mlflow_run.finish_parent(uri, parent, parent_status([], stopped))
        return
    try:
        _fail_orphans(study, uri)
        running = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
        ends = outcomes(study)
    except STORAGE_ERRORS:
        running, ends = [], []
    if running:
        log.info(
            f"MLflow parent run {parent} stays RUNNING: trials {running} run in another sweep "
            "process, whose end ends it"
        )
        return
    mlflow_run.finish_parent(uri, parent, parent_status(ends, stopped))


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
    for number, why in fail_orphans(study).items():
        trial = study.get_trials(deepcopy=False)[number]
        if run_id := trial.user_attrs.get("mlflow_run_id"):
            client = MlflowClient(uri)
            client.set_tag(run_id, "optuna.state", "FAIL")
            client.set_tag(run_id, "error", why)
            client.set_terminated(run_id, "KILLED")


def _trials(context: dict) -> None:
    study, n_trials, space = context["study"], context["n_trials"], context["space"]
    points = size(space)  # None: infinite
    while not context["stop"].is_set():
        _fail_orphans(study, context["uri"])
        state = counts(study)
        if state["done"] >= n_trials:
            return
        if context["budget"] and not _fits(context):
            return
        if points is not None:
            done, taken, _ = tried_points(study, space)
            if len(done) >= points:
                _say_exhausted(context, points, state["done"])
                return
            if len(taken) >= points:
                time.sleep(POLL)  # the last points run elsewhere; they may still fail
                continue
        if state["done"] + state["in_flight"] >= n_trials:
            time.sleep(POLL)  # the last trials run elsewhere; they may still fail
            continue
        with context["lock"]:  # one ask at a time in this process: its sampler is shared
            trial, params = _ask(context)
        if trial is None:
            continue
        _run_trial(context, trial, params)
        if context["budget"]:
            _spend(context)
        if context["failures"][0] > context["max_failures"]:
            context["errors"].append(
                f"{context['failures'][0]} trials failed, more than max_failure_rate allows "
                f"({context['max_failures']} of {n_trials}); see the FAIL trials' errors above"
            )
            context["stop"].set()


def _fits(context: dict) -> bool:
    """Whether the budget holds another trial; says once why not."""
    fits, why = context["budget"].fits()
    if not fits:
        with context["lock"]:
            if not context.get("budget_said"):
                context["budget_said"] = True
                log.info(f"sweep: no new trial: {why}")
    return fits


def _spend(context: dict) -> None:
    """Record this process's time on the study, and the budget's state on the parent run."""
    budget = context["budget"]
    budget.record()
    with contextlib.suppress(Exception):  # a figure of the parent's, never a stopped sweep
        MlflowClient(context["uri"]).log_metric(
            context["parent"], "sweep/budget_spent_seconds", budget.spent()
        )


def budget_line(budget: Budget) -> str:
    return f"; budget {shown(budget.seconds)}, {shown(max(budget.left(), 0))} left"


def _say_exhausted(context: dict, points: int, done: int) -> None:
    with context["lock"]:  # once, whichever thread finds it first
        if not context["exhausted"]:
            context["exhausted"] = True
            log.info(
                f"sweep: all {points} points of the search space have been tried; "
                f"stopping at {done} of {context['n_trials']} trials"
            )


ASKS = 10  # draws in a row before the loop looks at the study again


def _ask(context: dict):
    """A trial to run and its values, or (None, None). A draw of a point that is done or
    running, or that failed while an untried one is left, is told FAIL unrun, and another
    point is queued for the next ask: a sampler drawing a small space's last points at
    random would otherwise repeat many times."""
    study, space = context["study"], context["space"]
    for _ in range(ASKS):
        trial = study.ask()
        record_heartbeat(study, trial._trial_id)
        trial.set_user_attr("worker", WORKER)
        if is_surplus(study, trial, context["n_trials"]):  # another worker asked at that moment
            _skip(study, trial, "surplus: the study was full when this worker asked")
            return None, None
        seed_for_trial(study.sampler, context["seed"], trial.number)
        params = suggest(trial, space)
        _, taken, failed = tried_points(study, space)
        seed = (context["seed"], trial.number)
        untried = untried_point(space, taken | failed, seed)  # never run yet
        if (twin := duplicate_of(study, trial, params, space)) is not None:
            _skip(study, trial, f"same parameters as trial {twin}; not run twice")
        elif untried is not None and point(params, space) in failed:
            _skip(study, trial, "its point failed before: an untried point goes first")
        else:
            return trial, params
        queued = untried or untried_point(space, taken, seed)  # else a failed point again
        if queued is None:  # an infinite space (draw again), or none left (the loop waits)
            return None, None
        study.enqueue_trial(queued)  # asked at once, so it waits only for this ask
    return None, None


def _skip(study: optuna.Study, trial: optuna.Trial, why: str) -> None:
    """Tell a trial FAIL without running it: a bookkeeping entry, no job's outcome."""
    trial.set_user_attr("error", why)
    trial.set_user_attr(NOT_RUN, True)
    _tell(study, trial, state=TrialState.FAIL)


def _run_trial(context: dict, trial: optuna.Trial, params: dict) -> None:
    sweeper, study = context["sweeper"], context["study"]
    link = [
        override("trial.study", study.study_name),
        override("trial.storage", _storage_url(sweeper)),
        f"trial.number={trial.number}",
        override("trial.parent_run_id", context["parent"]),
        "trial.swept=[" + ",".join(f"'{key}'" for key in params) + "]",  # for the run's name
    ]
    if context["budget"]:  # a trial stops after the epoch that would end past it
        link.append(f"trial.deadline={context['budget'].trial_deadline(params):.3f}")
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
        keep_best_model(uri, parent, study.study_name)  # one logged model per study
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
            _tell(study, trial.number, state=TrialState.FAIL)


# its defaults list: what a run without a sweep trains (conf/ beside src/)
CONFIG_YAML = Path(__file__).resolve().parents[2] / "conf" / "config.yaml"
FIRST_QUEUED = "first_queued"  # a study attribute: the `first` trials are queued (once)


def queue_first(study: optuna.Study, space, first: dict) -> None:
    """Queue every combination of the space's other choices with the `first` values (once
    per study), so those trials run before the sampler draws any."""
    if study.user_attrs.get(FIRST_QUEUED):
        return
    choices = {
        k: d.choices
        for k, d in space.distributions.items()
        if isinstance(d, CategoricalDistribution) and k not in first
    }
    combos = [dict(zip(choices, values, strict=True)) for values in product(*choices.values())]
    for combo in combos:
        study.enqueue_trial({**first, **combo}, skip_if_exists=True)
    study.set_user_attr(FIRST_QUEUED, True)
    log.info(f"sweep: {len(combos)} trials with {describe(first, [])} go first")


def space_mode(cfg, params: dict) -> str:
    """The classifier mode of a trial with `params`: searched, or the sweep's own."""
    return str(params.get("classifier", cfg.classifier.get("name")))


def _known(cfg, key: str) -> bool:
    groups = set(OmegaConf.to_container(cfg.hydra.runtime.choices))
    return key in groups or OmegaConf.select(cfg, key, default="\0missing") != "\0missing"


def _save_runs_view(cfg, uri: str, experiment: str, study_name: str, space) -> str:
    """The study's trials in the runs table, best first, with the searched values as columns."""
    choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
    searched = space.distributions
    mode = MODES.get(cfg.classifier.get("name"))  # a searched classifier mixes both objectives
    return save_runs_view(
        uri,
        experiment,
        refined="classifier" not in searched and mode is not None and mode.refines,
        study=study_name,
        params=swept_params(searched, choices, OmegaConf.to_container(cfg)),
    )


def _experiment_name(cfg) -> str:
    root = cfg.dataset.get("root")
    return cfg.tracking.experiment or cfg.dataset.name or Path(str(root)).expanduser().name


def _storage_url(sweeper) -> str:
    settings, cfg = sweeper.settings, sweeper.config
    return settings["storage"] or default_storage(Path(cfg.paths.sweeps_dir))
