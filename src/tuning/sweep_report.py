"""What a sweep shows: its parent run's figures and best trial, and the closing summary."""

import json
import logging
import shlex
import tempfile
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from src.overrides import NUMERIC_GROUPS, override  # noqa: E402
from src.tuning.search_space import describe  # noqa: E402
from src.tuning.study import NOT_RUN  # noqa: E402

log = logging.getLogger(__name__)
FIGURES = {
    "optimization_history": optuna.visualization.matplotlib.plot_optimization_history,
    "param_importances": optuna.visualization.matplotlib.plot_param_importances,
    "parallel_coordinate": optuna.visualization.matplotlib.plot_parallel_coordinate,
    "intermediate_values": optuna.visualization.matplotlib.plot_intermediate_values,
}


def refresh_parent(uri: str, parent_id: str, study: optuna.Study) -> None:
    """Best value so far (a metric, one step per finished trial), the best trial as JSON,
    and Optuna's figures, redrawn so a running sweep can be watched in the MLflow UI."""
    client = MlflowClient(uri)
    finished = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    complete = [t for t in finished if t.state == TrialState.COMPLETE]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if complete:
            best = study.best_trial
            client.log_metric(parent_id, "best_value", best.value, step=len(finished))
            summary = {
                "number": best.number,
                "value": best.value,
                "params": best.params,
                "mlflow_run_id": best.user_attrs.get("mlflow_run_id"),
            }
            (folder / "best_trial.json").write_text(json.dumps(summary, indent=2))
        for name, plot in FIGURES.items() if complete else ():
            _figure(plot, study, folder / f"{name}.png")
        if complete:
            board = leaderboard(complete, study.direction)
            (folder / "leaderboard.json").write_text(json.dumps(board, indent=2))
            leaderboard_figure(board, folder / "leaderboard.png")
            best_against_time_figure(complete, study.direction, folder / "best_vs_elapsed.png")
        client.log_artifacts(parent_id, str(folder), "optuna")


GROUPED_BY = ("classifier", "model", "resolution")  # the leaderboard's rows, where searched


def leaderboard(complete: list, direction) -> list[dict]:
    """One row per searched classifier x model x resolution (those of the three that the
    trials' params hold): its trials, its best value and trial, its trials' hours; best
    first, in the study's `direction`."""
    sign = 1 if direction == optuna.study.StudyDirection.MAXIMIZE else -1
    rows: dict[tuple, dict] = {}
    for t in complete:
        key = tuple(str(t.params[k]) for k in GROUPED_BY if k in t.params)
        row = rows.setdefault(key, {"group": " / ".join(key) or "all", "trials": 0, "hours": 0.0})
        row["trials"] += 1
        row["hours"] += _seconds(t) / 3600
        if "best_value" not in row or sign * t.value > sign * row["best_value"]:
            row.update(best_value=t.value, best_trial=t.number)
    return sorted(rows.values(), key=lambda r: -sign * r["best_value"])


def leaderboard_figure(board: list[dict], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(board) + 1.5))
    names = [f"{r['group']} ({r['trials']})" for r in board][::-1]
    values = [r["best_value"] for r in board][::-1]
    ax.barh(names, values, color="tab:blue")
    for y, value in enumerate(values):
        ax.annotate(
            f"{value:.3f}",
            (value, y),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize="small",
        )
    ax.set(
        xlabel="best objective (validation class-averaged accuracy)",
        xlim=(0, 1.1),
        title="leaderboard: best trial per group (trials)",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def best_against_time_figure(complete: list, direction, path: Path) -> None:
    """The best objective so far against the sweep's elapsed wall time: where it still
    climbs at the end, a bigger budget would likely buy more."""
    start = min(t.datetime_start for t in complete if t.datetime_start)
    done = sorted(complete, key=lambda t: t.datetime_complete)
    better = max if direction == optuna.study.StudyDirection.MAXIMIZE else min
    minutes, best, so_far = [], [], None
    for t in done:
        so_far = t.value if so_far is None else better(so_far, t.value)
        minutes.append((t.datetime_complete - start).total_seconds() / 60)
        best.append(so_far)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.step(minutes, best, where="post", marker="o", ms=3)
    ax.set(
        xlabel="minutes since the first trial started",
        ylabel="best objective so far",
        title=f"best against elapsed time ({len(done)} complete trials)",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _seconds(trial) -> float:
    if trial.datetime_start and trial.datetime_complete:
        return (trial.datetime_complete - trial.datetime_start).total_seconds()
    return 0.0


def reproduce_command(fixed: list[str], params: dict) -> str:
    """The single run that repeats a trial, as a user would type it."""
    chosen = [f"{k}={v}" if k in NUMERIC_GROUPS else override(k, v) for k, v in params.items()]
    return "python -m src.run " + " ".join(shlex.quote(a) for a in [*fixed, *chosen])


def default_point(searched: list[str], config_yaml: Path) -> dict[str, str]:
    """The default run's choice (conf/config.yaml's defaults list) for each searched config
    group: what `python -m src.run` with the sweep's fixed keys would train, as a point of
    the space."""
    chosen = {}
    for entry in OmegaConf.load(config_yaml).defaults:
        if isinstance(entry, str) or len(entry) != 1:
            continue
        ((group, option),) = entry.items()
        if group in searched and option is not None:
            chosen[group] = str(option)
    return {key: chosen[key] for key in searched if key in chosen}  # in the space's order


def against_default(study: optuna.Study, default: dict[str, str]) -> str | None:
    """How far the best trial is ahead of the default run's configuration, where a complete
    trial ran exactly that point (`default`: group → option); else None."""
    if not default:
        return None
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if {k: str(v) for k, v in t.params.items()} == default:
            best = study.best_trial
            shown = ", ".join(f"{k}={v}" for k, v in default.items())
            return (
                f"the default configuration ({shown}, as `python -m src.run` with the fixed "
                f"keys trains) is trial {t.number}: {t.value:.4f}; the best is "
                f"{best.value - t.value:+.4f} on it"
            )
    return None


def summary(
    study: optuna.Study,
    fixed: list[str],
    links: dict[str, str] | None = None,
    ui_command: str | None = None,
    default: dict[str, str] | None = None,
) -> str:
    """The closing lines of a sweep: trials by state, the best one, how far ahead of the
    default run's configuration (`default`, where a trial ran it) and how to repeat it, and
    `links` (what → URL: the runs table, the parent run) to look at it in the MLflow UI,
    after the command that starts the UI where the store needs one (as a single run ends)."""
    trials = study.get_trials(deepcopy=False)
    states = [t.state for t in trials if not t.user_attrs.get(NOT_RUN)]
    counted = [f"{states.count(s)} {s.name.lower()}" for s in TrialState if states.count(s)]
    if skipped := len(trials) - len(states):  # told FAIL unrun: see sweep_loop._ask
        counted.append(f"{skipped} not run (a point drawn again, or one too many)")
    lines = [f"study {study.study_name}: {', '.join(counted)}"]
    if TrialState.COMPLETE in states:
        best = study.best_trial
        lines += [
            f"best trial {best.number}: value {best.value:.4f}",
            "  " + describe(best.params, fixed),
        ]
        if compared := against_default(study, default or {}):
            lines.append(compared)
        lines.append(f"reproduce it: {reproduce_command(fixed, best.params)}")
    if ui_command:
        lines.append(f"compare runs: {ui_command}")
    width = max((len(what) for what in links or {}), default=0)
    lines += [f"  {what + ':':<{width + 1}} {url}" for what, url in (links or {}).items()]
    return "\n".join(lines)


def _figure(plot, study: optuna.Study, path: Path) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "experimental" warnings of the matplotlib backend
            optuna.logging.set_verbosity(optuna.logging.ERROR)  # "too few trials" chatter
            axes = plot(study)
    except (ValueError, RuntimeError, ZeroDivisionError, IndexError) as error:
        log.debug(f"{path.stem}: not drawn yet ({error})")  # e.g. too few trials
        return
    figure = axes.flat[0].figure if hasattr(axes, "flat") else axes.figure
    figure.set_size_inches(8, 5)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
