"""The fuzz targets `benchmarks/fuzz.py` runs, one per process, under atheris (libFuzzer):

    python -m benchmarks.fuzz_targets images|requests WORKDIR [libFuzzer flags] CORPUS...

`images`: any bytes → `load_pixels` at 224 px. It returns (224, 224, 3) uint8 pixels or
raises ImageError; anything else is a crash.
`requests`: any bytes → a scoring request → MLflow's own request handler (`invocations`, what
`mlflow models serve` runs per request, minus HTTP) → the served model. An answer of 2xx or
4xx is fine; a 5xx, an exception MLflow lets through (the server answers those 500) or MLflow's
"unexpected error" (the model raised something other than its own 400) is a crash. The first
byte of an input says how the rest is sent (REQUEST_KINDS), so mutations reach both the
request parser and the image decoder behind it.

Pillow and our own code are instrumented for coverage (OpenCV and numpy are C: not seen).
Hangs and memory are left to libFuzzer's -timeout and -rss_limit_mb, which write the input.
"""

import base64
import json
import subprocess
import sys
from pathlib import Path

IMAGE_SIZE = 224  # px: the default resolution (conf/resolution/224.yaml)
SERVED_SIZE = 32  # px: the request target's model; its decoder path is the same
JSON, CSV = "application/json", "text/csv"
REQUEST_KINDS = ("raw JSON body", "raw CSV body", "image in dataframe_records", "image in split")
UNEXPECTED = "Encountered an unexpected error while evaluating the model"  # MLflow's wrapper
INSTRUMENTED = {
    "images": ["src", "PIL"],
    "requests": ["src", "PIL", "mlflow.pyfunc.scoring_server", "mlflow.models.utils"],
}


def quiet_opencv() -> None:
    """OpenCV logs each broken TIFF or PNG it is given on stderr; the fuzz log is for findings."""
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def images_target(workdir: Path):
    import warnings

    from src.data.images import ImageError
    from src.data.presets import load_pixels

    warnings.simplefilter("ignore")  # Pillow warns on every corrupt TIFF tag it skips
    expected = (IMAGE_SIZE, IMAGE_SIZE, 3)

    def one_input(data: bytes) -> None:
        try:
            pixels = load_pixels(data, IMAGE_SIZE)
        except ImageError:
            return
        if pixels.shape != expected or pixels.dtype.name != "uint8":
            raise AssertionError(f"load_pixels gave {pixels.dtype} {pixels.shape}")

    return one_input


def requests_target(workdir: Path):
    import warnings

    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc.scoring_server import invocations

    # this checkout's code, imported first, is what the model runs, not the copy saved in it
    import src.deployment.served_model  # noqa: F401

    warnings.simplefilter("ignore")
    model = mlflow.pyfunc.load_model(str(workdir / "model"))
    schema = model.metadata.get_input_schema()

    def one_input(data: bytes) -> None:
        body, content_type = request_of(data)
        try:
            answer = invocations(body, content_type, model, schema)
        except MlflowException as error:
            status = error.get_http_status_code()
            if status >= 500 or error.message.startswith(UNEXPECTED):
                trace = getattr(error, "stack_trace", None) or ""
                raise AssertionError(f"HTTP {status}: {error.message[:300]}\n{trace}") from None
            return
        if answer.status >= 500:
            raise AssertionError(f"HTTP {answer.status}: {str(answer.response)[:300]}")

    return one_input


def request_of(data: bytes) -> tuple[bytes, str]:
    """A fuzz input as a request body and its content type (see REQUEST_KINDS)."""
    kind, rest = (data[0] % len(REQUEST_KINDS), data[1:]) if data else (0, b"")
    if kind == 0:
        return rest, JSON
    if kind == 1:
        return rest, CSV
    image = base64.b64encode(rest).decode()
    if kind == 2:
        return json.dumps({"dataframe_records": [{"image": image}]}).encode(), JSON
    split = {"columns": ["image base64 string"], "data": [[image]]}
    return json.dumps({"dataframe_split": split}).encode(), JSON


def served_model(folder: Path) -> Path:
    """A served model as src.run logs it (resnet18 with random weights, 32 px, three classes),
    saved once in `folder`: building and saving it takes MLflow about 20 s."""
    if (folder / "MLmodel").exists():
        return folder
    import tempfile

    import mlflow
    import torch
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    from src.classifiers.network import ImageClassifier, make_head, make_spec
    from src.features.backbone import build_featurizer, feature_size
    from src.tracking.pyfunc_model import IMAGE_COLUMNS, PACKAGE_DIR, SERVED_MODEL_CODE

    featurizer, _ = build_featurizer("resnet18", weights="none", size=SERVED_SIZE)
    network = ImageClassifier(featurizer, make_head("svm", feature_size("resnet18"), 3), True)
    spec = make_spec(network, "resnet18", "svm", ["a", "b", "c"], SERVED_SIZE, "letterbox")
    inputs = Schema([ColSpec("string", name, required=False) for name in IMAGE_COLUMNS])
    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp) / "network.pt"
        torch.save(spec, saved)
        staging = Path(tmp) / "model"
        mlflow.pyfunc.save_model(
            str(staging),
            python_model=str(SERVED_MODEL_CODE),
            artifacts={"network": str(saved)},
            code_paths=[str(PACKAGE_DIR)],
            signature=ModelSignature(inputs=inputs),
            pip_requirements=[],  # inferring them loads the model in a subprocess: 20 s
        )
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(folder)  # whole or not at all: a killed start leaves no half model
    return folder


def save_served_model(workdir: Path) -> None:
    """`served_model` in a process of its own: it imports Pillow and our code, which the
    target's process must import for the first time inside `instrument_imports`."""
    command = [sys.executable, "-m", "benchmarks.fuzz_targets", "model", str(workdir)]
    subprocess.run(command, check=True)


TARGETS = {"images": images_target, "requests": requests_target}


def main(argv: list[str]) -> None:
    import atheris  # only here: the helpers above are imported by tests without it

    target, workdir, *libfuzzer_args = argv
    if target == "model":  # see `save_served_model`
        served_model(Path(workdir) / "model")
        return
    if target == "requests" and not (Path(workdir) / "model" / "MLmodel").exists():
        save_served_model(Path(workdir))
    with atheris.instrument_imports(include=INSTRUMENTED[target]):
        from PIL import Image

        Image.init()  # every Pillow format plugin, imported here so that it is instrumented
        one_input = TARGETS[target](Path(workdir))
    quiet_opencv()
    atheris.Setup([sys.argv[0], *libfuzzer_args], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv[1:])
