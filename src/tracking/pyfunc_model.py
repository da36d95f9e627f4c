"""Logging the served model (src/deployment/served_model.py) as the run's MLflow `model`.

MLflow logs it "from code": it is given the path of `served_model_code.py`, which it runs to
build the model, and this package's code to ship beside the network (`network.pt`: spec
and weights). Tracking names that file and never imports it: the served model sits above
tracking, in src/deployment/. The signature's input columns are the served model's contract,
defined here, where it is logged, and read by the served model.
"""

import base64
import contextlib
import io
import os
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.entities import LoggedModel
from mlflow.models import ModelSignature
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, Schema
from mlflow.utils.file_utils import local_file_uri_to_path

IMAGE_COLUMNS = ("image", "image base64 string")  # the served model reads the first present
REQUIREMENTS = (
    "torch",
    "torchvision",
    "numpy",
    "pandas",
    "opencv-python-headless",
    "pillow",
    "mlflow",
)
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the `src` package, shipped with the model
SERVED_MODEL_CODE = PACKAGE_DIR / "deployment" / "served_model_code.py"
MODEL_NAME = "model"  # the name every run logs its model under (src.register looks it up)
# on a sweep trial's run whose model is not (or no longer) logged: why, and what logs it
MODEL_KEPT_TAG = "model.kept"
NOT_BEST = "no: not the study's best when it finished; python -m src.register logs it"
SUPERSEDED = "no: deleted once a better trial finished; python -m src.register logs it again"


def log_model(spec: dict, example_image: bytes, model_id: str | None = None) -> str:
    """Log the network as the active run's `model`, or into the logged model `model_id`
    made beforehand (src.register, for a finished run); returns its models:/ URI."""
    classes = spec["classes"]
    signature = ModelSignature(
        inputs=Schema([ColSpec("string", name, required=False) for name in IMAGE_COLUMNS]),
        outputs=Schema(
            [ColSpec("string", "label"), ColSpec("double", "score")]
            + [ColSpec("double", name) for name in classes]
        ),
    )
    example = pd.DataFrame({"image": [base64.b64encode(example_image).decode()]})
    # MLflow re-reads the model to check the example; its per-file progress bars are noise here
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with tempfile.TemporaryDirectory() as tmp:
        network = Path(tmp) / "network.pt"
        torch.save(spec, network)
        info = mlflow.pyfunc.log_model(
            name=MODEL_NAME,
            python_model=str(SERVED_MODEL_CODE),
            artifacts={"network": str(network)},
            code_paths=[str(PACKAGE_DIR)],
            signature=signature,
            input_example=example,
            pip_requirements=_requirements(),
            model_id=model_id,
        )
    return info.model_uri


def delete_logged_model(client: MlflowClient, model: LoggedModel) -> None:
    """Delete a logged model and its files. MLflow's delete only marks it deleted (its files
    stay until `mlflow gc`); its artifacts go here, through the store's artifact repository
    (a local folder, or a server's proxied artifacts)."""
    client.delete_logged_model(model.model_id)
    get_artifact_repository(model.artifact_location).delete_artifacts()
    if model.artifact_location.startswith("file:"):  # its emptied folder, in a local store
        with contextlib.suppress(OSError):
            Path(local_file_uri_to_path(model.artifact_location)).parent.rmdir()


def encode_jpeg(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _requirements() -> list[str]:
    pinned = []
    for package in REQUIREMENTS:
        try:
            pinned.append(f"{package}=={version(package).split('+')[0]}")
        except PackageNotFoundError:
            pinned.append(package)
    return pinned
