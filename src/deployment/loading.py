"""Loading a logged or registered model by its URI, for batch prediction and export.

The loaded object is the served model itself (`src.deployment.served_model.ImageClassifierModel`,
as MLflow rebuilt it from the model's weights), so batch prediction and export use exactly
what the scoring server runs: its network, classes, size and preprocessing.
"""

import os

import mlflow
from mlflow.exceptions import MlflowException

from src.deployment.served_model import ImageClassifierModel
from src.errors import UserError

URI_FORMS = "models:/<name>@<alias>, models:/<name>/<version>, runs:/<run id>/model or a folder"


def load_image_classifier(uri: str) -> ImageClassifierModel:
    """The model at `uri` (anything `mlflow.pyfunc.load_model` takes), unwrapped."""
    # a bar per downloaded file (the model ships its code) is noise beside our own progress
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        model = mlflow.pyfunc.load_model(uri)
    except (MlflowException, OSError) as error:
        reason = getattr(error, "message", str(error)).strip().splitlines()[0]
        raise UserError(f"model {uri} cannot be loaded ({reason}); expected {URI_FORMS}") from None
    try:
        python_model = model.unwrap_python_model()
    except MlflowException:  # another flavour's model
        python_model = None
    if not isinstance(python_model, ImageClassifierModel):
        raise UserError(f"model {uri} is not an image classifier logged by src.run")
    return python_model


def needs_tracking_store(uri: str) -> bool:
    """`models:/` and `runs:/` URIs are looked up in the tracking store; paths are not."""
    return uri.startswith(("models:/", "runs:/"))
