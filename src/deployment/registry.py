"""Putting a run's model into MLflow's model registry, under a name and an alias.

A version is made from a run (its logged `model`), or from a sweep: the finished trial with
the best validation class-averaged accuracy (the objective sweeps maximise; model selection
never looks at test metrics). The version carries its run's headline metrics as tags and in
its description, so the registry shows what was deployed. Aliases (`champion`, ...) replace
the stages MLflow 3 deprecated: `models:/<name>@<alias>` always means the aliased version.
"""

from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from src.errors import UserError

MODEL_NAME = "model"  # the name `src.run` logs its model under
OBJECTIVE = "val/class_avg_accuracy"  # what a sweep maximises; picks a study's best trial
STUDY_TAG, TRIAL_TAG = "optuna.study", "optuna.trial"  # set on each trial's run by sweeps
HEADLINE = [
    f"{split}/{metric}"
    for split in ("train", "val", "test")
    for metric in ("accuracy", "class_avg_accuracy", "auc_micro", "auc_macro")
]
COPIED_TAGS = ("classifier", "model", "dataset", "pretrained", "git_commit", STUDY_TAG, TRIAL_TAG)


def find_run(client: MlflowClient, run_id: str) -> Run:
    try:
        return client.get_run(run_id)
    except MlflowException:
        raise UserError(f"no run with id {run_id!r} in {client.tracking_uri}") from None


def best_run_of_study(client: MlflowClient, study: str) -> Run:
    """The study's FINISHED trial run with the highest validation class-averaged accuracy."""
    if "'" in study:
        raise UserError(f"study name {study!r} contains a quote")
    experiments = [e.experiment_id for e in client.search_experiments()]
    tagged = f"tags.`{STUDY_TAG}` = '{study}'"
    best = client.search_runs(
        experiments,
        f"{tagged} AND attributes.status = 'FINISHED' AND metrics.`{OBJECTIVE}` >= 0",
        order_by=[f"metrics.`{OBJECTIVE}` DESC", "attributes.start_time ASC"],
        max_results=1,
    )
    if best:
        return best[0]
    if client.search_runs(experiments, tagged, max_results=1):
        raise UserError(f"study {study!r} has no finished trial run with the metric {OBJECTIVE}")
    raise UserError(
        f"no runs of study {study!r} in {client.tracking_uri} (none is tagged {STUDY_TAG}={study})"
    )


def register_run(client: MlflowClient, run: Run, name: str, alias: str | None) -> ModelVersion:
    """A new version of registered model `name` from the run's logged model, aliased `alias`."""
    run_id = run.info.run_id
    if run.info.status != "FINISHED":
        raise UserError(f"run {run_id} is {run.info.status}; only a finished run is registered")
    logged = [
        m
        for m in client.search_logged_models(
            [run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'"
        )
        if m.name == MODEL_NAME
    ]
    if not logged:
        raise UserError(f"run {run_id} has no logged model named {MODEL_NAME!r}")
    model = logged[-1]
    try:
        _ensure_registered_model(client, name)
        version = client.create_model_version(
            name,
            source=model.artifact_location,
            run_id=run_id,
            tags=version_tags(run),
            description=version_description(run),
            model_id=model.model_id,
        )
    except MlflowException as error:  # an invalid name, a store that refuses
        raise UserError(f"registering {name!r}: {error.message.splitlines()[0]}") from None
    if alias:
        try:
            client.set_registered_model_alias(name, alias, version.version)
        except MlflowException as error:  # an invalid alias: leave no version without it
            client.delete_model_version(name, version.version)
            raise UserError(f"alias {alias!r}: {error.message.splitlines()[0]}") from None
    return version


def version_tags(run: Run) -> dict[str, str]:
    """The run's headline metrics (e.g. `val/class_avg_accuracy`), its id and its tags."""
    metrics = run.data.metrics
    tags = {key: f"{metrics[key]:.6g}" for key in HEADLINE if key in metrics}
    tags["run_id"] = run.info.run_id
    tags.update({key: run.data.tags[key] for key in COPIED_TAGS if key in run.data.tags})
    return tags


def version_description(run: Run) -> str:
    metrics, tags = run.data.metrics, run.data.tags
    lines = [f"From run {run.info.run_id} ({run.info.run_name})."]
    if STUDY_TAG in tags:
        lines.append(
            f"Best trial ({tags.get(TRIAL_TAG, '?')}) of study {tags[STUDY_TAG]} by {OBJECTIVE}."
        )
    lines += [f"- {key}: {metrics[key]:.4f}" for key in HEADLINE if key in metrics]
    return "\n".join(lines)


def _ensure_registered_model(client: MlflowClient, name: str) -> None:
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name)
