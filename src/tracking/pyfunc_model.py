"""Logging the served model (src/deployment/served_model.py) as the run's MLflow `model`.

MLflow logs it "from code": it is given the path of `served_model_code.py`, which it runs to
build the model, and this package's code to ship beside the network (`network.pt`: spec
and weights). Tracking names that file and never imports it: the served model sits above
tracking, in src/deployment/. The signature's input columns are the served model's contract,
defined here, where it is logged, and read by the served model.
"""

import base64
import io
import os
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

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


def log_model(spec: dict, example_image: bytes) -> str:
    """Log the network as the run's `model`; returns its models:/ URI."""
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
            name="model",
            python_model=str(SERVED_MODEL_CODE),
            artifacts={"network": str(network)},
            code_paths=[str(PACKAGE_DIR)],
            signature=signature,
            input_example=example,
            pip_requirements=_requirements(),
        )
    return info.model_uri


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
