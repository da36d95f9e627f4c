"""The served model: an MLflow pyfunc that scores base64-encoded images.

Contract (also what `mlflow models serve` answers):
  in   a DataFrame with an `image` column (or `image base64 string`, the original service's
       name) of base64-encoded image bytes: JPEG, PNG, BMP, WebP, TIFF or GIF
  out  a DataFrame with `label`, `score` (its probability) and one probability per class
It computes in the precision its run's metrics were computed in (the spec's `precision`), so
it makes the decisions the run reported; the environment variable
IMGSWEEP_PRECISION=auto|fp32|bf16|fp16 overrides that (auto: what this machine does best,
src/precision.py), at the cost of that guarantee. A bf16 model on a CPU without native bf16
is emulated (slower); an fp16 model on a CPU runs in fp32 (the CPU has no fp16 path). The
label is the argmax of the network's logits; the scores are softmax(T * logits), T the
calibration temperature in the spec (src/classifiers/calibration.py).
The model directory holds the network (`network.pt`: spec and weights) and this package's
code, so it loads in a fresh process with no training config and no checkout. MLflow builds
it by running `served_model_code.py` ("models from code"), so nothing is pickled; the run
logs it with src/tracking/pyfunc_model.py.
"""

import base64
import binascii
import os

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from src.data.images import ImageError
from src.data.presets import load_pixels
from src.precision import autocast, choose_precision, detect_native_bf16, resolve_precision
from src.tracking.pyfunc_model import IMAGE_COLUMNS

PRECISION_VARIABLE = "IMGSWEEP_PRECISION"  # the serving machine's choice; default auto
BATCH_SIZE = 32


class ImageClassifierModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from src.classifiers.network import build_from_spec  # from the model's own code copy

        spec = torch.load(context.artifacts["network"], map_location="cpu", weights_only=True)
        self.classes = list(spec["classes"])
        self.size, self.preprocessing = int(spec["size"]), spec["preprocessing"]
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.trained_precision = spec.get("precision", "fp32")  # older models: fp32
        self.precision = serving_precision(
            os.environ.get(PRECISION_VARIABLE), self.trained_precision, self.device
        )
        model = build_from_spec(spec).to(self.device)
        self.model = model.to(memory_format=torch.channels_last)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        column = next((c for c in IMAGE_COLUMNS if c in model_input.columns), None)
        if column is None:
            # the server's schema check has already dropped unknown columns, so none are named
            raise bad_request(
                f"no image column: expected a column named one of {list(IMAGE_COLUMNS)}"
            )
        pixels = [self.pixels_of(value, row) for row, value in enumerate(model_input[column])]
        return self.to_frame(*self.predict_pixels(np.stack(pixels) if pixels else pixels))

    def pixels_of(self, value, row: int) -> np.ndarray:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            raise bad_request(f"row {row}: no image (null); expected base64-encoded bytes")
        if not isinstance(value, (str, bytes)):
            raise bad_request(
                f"row {row}: the image is a {type(value).__name__}; expected a base64 string"
            )
        if not value:
            raise bad_request(f"row {row}: the image is empty; expected base64-encoded bytes")
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise bad_request(f"row {row}: the image is not valid base64") from None
        try:
            return load_pixels(data, self.size, self.preprocessing)
        except ImageError as error:
            raise bad_request(f"row {row}: {error}") from None

    def predict_pixels(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (N, size, size, 3) pixels → the (N,) decisions and (N, classes) scores."""
        labels, probabilities = [], []
        with torch.inference_mode(), autocast(self.device, self.precision):
            for start in range(0, len(pixels), BATCH_SIZE):
                batch = torch.from_numpy(pixels[start : start + BATCH_SIZE]).to(self.device)
                logits = self.model(batch).float()
                labels.append(logits.argmax(1).cpu().numpy())
                probabilities.append(self.model.probabilities(logits).cpu().numpy())
        if not labels:
            return np.zeros(0, int), np.zeros((0, len(self.classes)))
        return np.concatenate(labels), np.concatenate(probabilities)

    def to_frame(self, best: np.ndarray, probabilities: np.ndarray) -> pd.DataFrame:
        frame = pd.DataFrame(
            {
                "label": [self.classes[k] for k in best],
                "score": probabilities[np.arange(len(best)), best].astype(float),
            }
        )
        for k, name in enumerate(self.classes):
            frame[name] = probabilities[:, k].astype(float)
        return frame


def serving_precision(requested: str | None, trained: str, device: torch.device) -> str:
    """The run's own precision unless `requested` (IMGSWEEP_PRECISION) says otherwise; fp16
    on a CPU, which cannot run it, becomes fp32."""
    if requested:
        return resolve_precision(requested, device)
    if trained == "fp16" and device.type == "cpu":
        return "fp32"
    return choose_precision(trained, device.type, detect_native_bf16(device))


def bad_request(message: str) -> MlflowException:
    """An error the scoring server answers with HTTP 400 and this message."""
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)
