"""A sweep that finishes its winner (`hydra.sweeper.finish=true`): once the trials are done,
the best trial's configuration runs once more as a plain `python -m src.run`, the command
the summary prints to reproduce it, with `classifier.refit=true` for `dnn`: validation
chooses the epoch count as in the trial, then the network is retrained on train +
validation for that many epochs (src/modes/refining.py). It is scored on the test split once,
as every run is (the trials chose it by validation alone), nested under the sweep's parent
run and registered as `<name>@champion` (name: hydra.sweeper.register_name, else the
experiment's), a model to serve, predict with and export like any other.

Trials keep `refit: false` (each would take twice as long for models the sweep mostly
discards), so the winner is the only network trained on validation's images too.
"""

import shlex
import subprocess
import sys

import optuna
from mlflow.tracking import MlflowClient

from src.errors import UserError
from src.tracking.mlflow_run import model_version_url
from src.tuning.sweep_report import reproduce_command

CHAMPION = "champion"  # the alias of the finished winner


def finish_winner(
    study: optuna.Study,
    fixed: list[str],
    mode: str,
    uri: str,
    experiment_id: str,
    parent: str,
    name: str,
    register,
) -> list[str]:
    """Run, nest and register the best trial's configuration (`register(client, run, name,
    alias)`: src/deployment/registry.py's register_run); the lines that say so."""
    best = study.best_trial
    run_name = f"{study.study_name}-champion"
    command = reproduce_command(fixed, best.params) + f" tracking.run_name={run_name}"
    if mode == "dnn":
        command += " classifier.refit=true"
    print(f"champion: trial {best.number}'s configuration, retrained on train + validation:")
    print(f"  {command}", flush=True)
    arguments = shlex.split(command)[3:]  # after "python -m src.run"
    # its output is the console's: a run like any other
    finished = subprocess.run([sys.executable, "-m", "src.run", *arguments], check=False)
    if finished.returncode != 0:
        raise UserError(
            f"the champion's run failed (exit {finished.returncode}); the study keeps its "
            "trials: run the same sweep again to retry it"
        )
    client = MlflowClient(uri)
    (run,) = client.search_runs(
        [experiment_id],
        f"tags.mlflow.runName LIKE '{run_name}%'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    client.set_tag(run.info.run_id, "mlflow.parentRunId", parent)
    client.set_tag(run.info.run_id, "sweep.champion_of_trial", str(best.number))
    version = register(client, client.get_run(run.info.run_id), name, CHAMPION)
    test = run.data.metrics.get("test/class_avg_accuracy")
    return [
        f"champion: trial {best.number} (validation {best.value:.4f}), test class-averaged "
        f"accuracy {test:.4f}"
        if test is not None
        else f"champion: trial {best.number} (validation {best.value:.4f})",
        f"  registered: models:/{name}@{CHAMPION} (version {version.version}): "
        f"{model_version_url(uri, name, version.version)}",
    ]
