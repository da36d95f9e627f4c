"""`python -m src.register run_id=<id> name=fashion-texture alias=champion`, or `study=<name>`
in place of `run_id=` to register the best trial of a sweep.

Then `models:/fashion-texture@champion` names that version: serve it, predict with it,
export it. Registering again makes a new version and moves the alias to it.
"""

from mlflow.tracking import MlflowClient

from src.command_line import REQUIRED, parse_arguments, run_command
from src.deployment.registry import (
    OBJECTIVE,
    RANDOM_WEIGHTS_NOTE,
    best_run_of_study,
    final,
    find_run,
    random_weights,
    register_run,
)
from src.errors import UserError
from src.tracking.mlflow_run import model_version_url
from src.tracking.store import use_tracking_store


def register(argv: list[str]) -> None:
    arguments = parse_arguments(
        argv,
        {"name": REQUIRED, "run_id": None, "study": None, "alias": None, "tracking_uri": None},
    )
    run_id, study = arguments["run_id"], arguments["study"]
    if bool(run_id) == bool(study):
        raise UserError("give run_id=<MLflow run id> or study=<sweep study name> (one of them)")
    uri = use_tracking_store(arguments["tracking_uri"])
    client = MlflowClient(uri)
    run = find_run(client, run_id) if run_id else best_run_of_study(client, study)
    name, alias = arguments["name"], arguments["alias"] or None
    version = register_run(client, run, name, alias)
    objective = final(run.data.metrics, OBJECTIVE)
    print(
        f"registered run {run.info.run_id} as {name} version {version.version}"
        + (f" ({OBJECTIVE} {objective:.4f})" if objective is not None else "")
    )
    if random_weights(run):
        print(f"  note: {RANDOM_WEIGHTS_NOTE}")
    print(f"  in the MLflow UI: {model_version_url(uri, name, version.version)}")
    if alias:
        print(f"  models:/{name}@{alias} now points to version {version.version}")
        print(
            f"  serve it: MLFLOW_TRACKING_URI={uri} mlflow models serve "
            f'-m "models:/{name}@{alias}" --env-manager local -p 5001'
        )


if __name__ == "__main__":
    run_command(register)
