"""Shared fixtures: tiny real datasets on disk, and running the real CLI in a subprocess."""

import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from src.data.synthetic import ensure_synthetic_textures

ROOT = Path(__file__).resolve().parents[1]

# Small everything: 32 px, random weights, one worker process, a store of the test's own.
FAST = ["resolution.size=32", "model.weights=none", "num_workers=0"]
TINY_SYNTHETIC = ["dataset.synthetic.images_per_class=8", "dataset.synthetic.image_size=64"]


def image_bytes(
    fmt: str = "JPEG", size=(48, 40), mode: str = "RGB", seed: int = 0, **save
) -> bytes:
    """A real encoded image with random content."""
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}.get(mode, 3)
    array = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    image = Image.fromarray(
        array.squeeze() if channels == 1 else array, "L" if channels == 1 else None
    )
    image = image.convert(mode) if image.mode != mode else image
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


def write_dataset(root: Path, counts: dict[str, int], size=(48, 40)) -> Path:
    """root/<class>/<class>_<i>.jpg with random pixels, as many as `counts` says."""
    for label, n in counts.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (root / label / f"{label}_{i:03d}.jpg").write_bytes(
                image_bytes(seed=zlib.crc32(f"{label}{i}".encode()), size=size)
            )
    return root


@pytest.fixture(scope="session")
def textures(tmp_path_factory) -> Path:
    """The real synthetic texture generator, tiny: 3 classes x 8 images, 64 px."""
    return ensure_synthetic_textures(tmp_path_factory.mktemp("textures") / "set", 8, 64, 0)


def run_cli(
    *overrides: str, tmp: Path, env: dict | None = None, timeout: int = 300, multirun=False
):
    """`python -m src.run` in a subprocess with FAST settings, data, store and sweeps under
    tmp (a `tracking.uri=...` among the overrides wins over the store under tmp)."""
    own_dataset = any(o.startswith("dataset=") for o in overrides)
    fresh_store(Path(tmp) / "mlruns" / "mlflow.db")
    command = [
        sys.executable,
        "-m",
        "src.run",
        *(["-m"] if multirun else []),
        *FAST,
        *([] if own_dataset else TINY_SYNTHETIC),
        f"paths.data_dir={tmp}/data",
        f"paths.sweeps_dir={tmp}/sweeps",
        f"tracking.uri=sqlite:///{tmp}/mlruns/mlflow.db",
        *overrides,
    ]
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    environment.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=environment
    )


def fresh_store(path: Path) -> None:
    """An empty MLflow SQLite store at `path`, copied from one made once per session:
    creating the tables takes MLflow seconds, every time."""
    if path.exists():
        return
    template = Path(os.environ.get("PYTEST_STORE_TEMPLATE", "/nonexistent"))
    if not template.exists():
        template = Path(tempfile.mkdtemp(prefix="mlflow-template-")) / "mlflow.db"
        MlflowClient(f"sqlite:///{template}").search_experiments()
        os.environ["PYTEST_STORE_TEMPLATE"] = str(template)
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, path)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` on a free loopback port (SQLite backend, local artifacts)."""
    folder = tmp_path_factory.mktemp("server")
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        f"sqlite:///{folder}/db.sqlite",
        "--artifacts-destination",
        str(folder / "artifacts"),
        "--workers",
        "1",
    ]
    log = (folder / "server.log").open("w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2):
                    break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    pytest.fail(
                        f"mlflow server did not start: {(folder / 'server.log').read_text()}"
                    )
                time.sleep(0.5)
        yield uri
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
