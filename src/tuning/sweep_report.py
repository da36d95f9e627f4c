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
        client.log_artifacts(parent_id, str(folder), "optuna")


def reproduce_command(fixed: list[str], params: dict) -> str:
    """The single run that repeats a trial, as a user would type it."""
    chosen = [f"{k}={v}" if k in NUMERIC_GROUPS else override(k, v) for k, v in params.items()]
    return "python -m src.run " + " ".join(shlex.quote(a) for a in [*fixed, *chosen])


def summary(
    study: optuna.Study,
    fixed: list[str],
    links: dict[str, str] | None = None,
    ui_command: str | None = None,
) -> str:
    """The closing lines of a sweep: trials by state, the best one and how to repeat it, and
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
            f"reproduce it: {reproduce_command(fixed, best.params)}",
        ]
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
