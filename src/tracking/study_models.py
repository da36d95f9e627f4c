"""One logged model per sweep study: its best trial's, which the parent run points to.

A trial logs its model only while it is its study's best (src/pipeline.py `finish`, asking
the study's storage at that moment); trials running in parallel may both have. After each
trial is told, `keep_best_model` deletes the models of the study's other ended trials (their
files too) and tags the parent with the best trial: `best_trial.run_id`,
`best_trial.number` and `best_trial.model_uri`. "Best" is `best_run_of_study`'s choice,
the one `python -m src.register study=<name>` registers. A model that was registered is
never deleted; any other trial's model is logged again on demand by src.register.
"""

from mlflow.entities import LoggedModel, Run
from mlflow.tracking import MlflowClient

from src.errors import UserError
from src.tracking.pyfunc_model import (  # noqa: F401 - MODEL_NAME: src.register's name for it
    MODEL_KEPT_TAG,
    MODEL_NAME,
    SUPERSEDED,
    delete_logged_model,
)

OBJECTIVE = "val/class_avg_accuracy"  # what a sweep maximises; picks a study's best trial
STUDY_TAG, TRIAL_TAG = "optuna.study", "optuna.trial"  # set on each trial's run by sweeps
BEST_RUN_TAG, BEST_TRIAL_TAG, BEST_MODEL_TAG = (
    "best_trial.run_id",
    "best_trial.number",
    "best_trial.model_uri",
)


def final(metrics: dict, name: str) -> float | None:
    """The final model's value of a metric. A refinement logs `val/class_avg_accuracy` per
    epoch (its latest value is the last epoch's) and the final model's as
    `val/eval_class_avg_accuracy`; other runs log the final value under the plain name."""
    split, _, metric = name.partition("/")
    return metrics.get(f"{split}/eval_{metric}", metrics.get(name))


def study_runs(client: MlflowClient, study: str) -> list[Run]:
    """Every trial run of the study, in any experiment of the store."""
    if "'" in study:
        raise UserError(f"study name {study!r} contains a quote")
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs, token = [], None
    while True:
        page = client.search_runs(experiments, f"tags.`{STUDY_TAG}` = '{study}'", page_token=token)
        runs += page
        token = page.token
        if not token:
            return runs


def best_run_of_study(client: MlflowClient, study: str) -> Run:
    """The study's best completed trial by the final model's validation class-averaged
    accuracy; ties go to the earlier trial. Pruned trials (FINISHED runs, but stopped
    early and without a model) and failed ones are left out."""
    runs = study_runs(client, study)
    if not runs:
        raise UserError(
            f"no runs of study {study!r} in {client.tracking_uri} "
            f"(none is tagged {STUDY_TAG}={study})"
        )
    completed = [
        run
        for run in runs
        if run.info.status == "FINISHED"
        and final(run.data.metrics, OBJECTIVE) is not None
        and run.data.tags.get("optuna.pruned") != "true"
        and run.data.tags.get("optuna.state", "COMPLETE") == "COMPLETE"
    ]
    if not completed:
        raise UserError(f"study {study!r} has no completed trial run with the metric {OBJECTIVE}")
    return max(
        completed,
        key=lambda run: (final(run.data.metrics, OBJECTIVE), -run.info.start_time),
    )


def logged_models(client: MlflowClient, run: Run) -> list[LoggedModel]:
    """The run's logged `model`s that are not deleted, oldest first."""
    return [
        m
        for m in client.search_logged_models(
            [run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
        )
        if m.name == MODEL_NAME
    ]


def keep_best_model(uri: str, parent: str, study: str) -> None:
    """Delete the logged models of the study's ended trials but its best, unless registered,
    and point the parent run at the best trial and its model."""
    client = MlflowClient(uri)
    try:
        best = best_run_of_study(client, study)
    except UserError:  # no completed trial yet
        return
    for run in study_runs(client, study):
        if run.info.run_id == best.info.run_id or run.info.status == "RUNNING":
            continue  # a running trial may still be logging the model it needs
        registered = _registered(client, run.info.run_id)
        for model in logged_models(client, run):
            if not {model.model_id, model.artifact_location} & registered:
                delete_logged_model(client, model)
                client.set_tag(run.info.run_id, MODEL_KEPT_TAG, SUPERSEDED)
    models = logged_models(client, best)
    client.set_tag(parent, BEST_RUN_TAG, best.info.run_id)
    client.set_tag(parent, BEST_TRIAL_TAG, best.data.tags.get(TRIAL_TAG, "?"))
    client.set_tag(parent, BEST_MODEL_TAG, f"models:/{models[-1].model_id}" if models else "")


def _registered(client: MlflowClient, run_id: str) -> set[str]:
    """The model ids and sources of the run's registered versions (a SQLite registry keeps
    a version's source, not its model id)."""
    versions = client.search_model_versions(f"run_id = '{run_id}'")
    return {v.model_id for v in versions if v.model_id} | {v.source for v in versions}
