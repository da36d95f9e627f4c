"""Putting a run's model into MLflow's model registry, under a name and an alias.

A version is made from a run (its logged `model`), or from a sweep: the completed trial with
the best validation class-averaged accuracy (the objective sweeps maximise; model selection
never looks at test metrics). A sweep keeps only its best trial's model: another trial's
is logged again first, by training it again exactly (src/deployment/refit.py). The version
carries its run's headline metrics as tags and in its description, so the registry shows
what was deployed; a version trained from random
weights (run tag `pretrained=false`, `model.weights=none`) says so in a tag and in the first
line of its description, so it is not taken for a real model. Aliases (`champion`, ...) replace
the stages MLflow 3 deprecated: `models:/<name>@<alias>` always means the aliased version.
"""

from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from src.data.split import SPLITS
from src.deployment.refit import log_model_again
from src.errors import UserError
from src.tracking.study_models import (  # noqa: F401 - src.register's names for them
    MODEL_NAME,
    OBJECTIVE,
    STUDY_TAG,
    TRIAL_TAG,
    best_run_of_study,
    final,
    logged_models,
)

HEADLINE = [
    f"{split}/{metric}"
    for split in SPLITS
    for metric in ("accuracy", "class_avg_accuracy", "auc_micro", "auc_macro")
]
COPIED_TAGS = ("classifier", "model", "dataset", "pretrained", "git_commit", STUDY_TAG, TRIAL_TAG)
RANDOM_WEIGHTS_TAG = "random_weights"  # on versions whose backbone was not pretrained
RANDOM_WEIGHTS_NOTE = (
    "Trained from random weights (model.weights=none), not from pretrained ones: "
    "a pipeline check, not a model to deploy."
)


def find_run(client: MlflowClient, run_id: str) -> Run:
    try:
        return client.get_run(run_id)
    except MlflowException:
        raise UserError(f"no run with id {run_id!r} in {client.tracking_uri}") from None


def register_run(client: MlflowClient, run: Run, name: str, alias: str | None) -> ModelVersion:
    """A new version of registered model `name` from the run's logged model, aliased `alias`."""
    run_id = run.info.run_id
    if run.info.status != "FINISHED":
        raise UserError(f"run {run_id} is {run.info.status}; only a finished run is registered")
    logged = logged_models(client, run)
    # a sweep trial keeps its model only while best: any other's is logged again, exactly
    model = logged[-1] if logged else log_model_again(client, run)
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
    """The final model's headline metrics (e.g. `val/class_avg_accuracy`), the run's id and
    its tags."""
    tags = {key: f"{value:.6g}" for key, value in headline(run).items()}
    tags["run_id"] = run.info.run_id
    tags.update({key: run.data.tags[key] for key in COPIED_TAGS if key in run.data.tags})
    if random_weights(run):
        tags[RANDOM_WEIGHTS_TAG] = "true: not pretrained, not for deployment"
    return tags


def version_description(run: Run) -> str:
    tags = run.data.tags
    lines = [RANDOM_WEIGHTS_NOTE] if random_weights(run) else []
    lines.append(f"From run {run.info.run_id} ({run.info.run_name}).")
    if STUDY_TAG in tags:
        lines.append(
            f"Best trial ({tags.get(TRIAL_TAG, '?')}) of study {tags[STUDY_TAG]} by {OBJECTIVE}."
        )
    lines += [f"- {key}: {value:.4f}" for key, value in headline(run).items()]
    return "\n".join(lines)


def random_weights(run: Run) -> bool:
    """Was the run's backbone built from random weights? (src.run tags `pretrained`.)"""
    return run.data.tags.get("pretrained") == "false"


def headline(run: Run) -> dict[str, float]:
    values = {key: final(run.data.metrics, key) for key in HEADLINE}
    return {key: value for key, value in values.items() if value is not None}


def _ensure_registered_model(client: MlflowClient, name: str) -> None:
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name)
