"""Shared fixtures: tiny real datasets on disk, and running the real CLI in a subprocess."""

import contextlib
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
import zlib
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy
from mlflow.tracking import MlflowClient
from PIL import Image

from benchmarks.common import write_colour_dataset  # noqa: F401 (the tests import it from here)
from src.data.synthetic import ensure_synthetic_textures
from tests import postgres_cluster

ROOT = Path(__file__).resolve().parents[1]

# Small everything: 32 px, random weights, one worker process, a store of the test's own.
# the per-epoch metrics of a refinement, as issue 3 names them (a user's MLflow charts)
EPOCH_METRICS = [
    "train/loss",
    "train/accuracy",
    "val/loss",
    "val/accuracy",
    "val/class_avg_accuracy",
    "lr",
    "time/epoch_seconds",
    "time/train_images_per_second",
]
FAST = ["resolution.size=32", "model.weights=none", "num_workers=0"]
TINY_SYNTHETIC = ["dataset.synthetic.images_per_class=8", "dataset.synthetic.image_size=64"]


def pytest_configure(config):
    """Under `pytest -n N`, each worker keeps to a core of its own (where there are N): the
    runs it starts inherit that and size torch's threads to it (src/device.py), as on a
    machine of that many cores. Measured on 2 cores: one worker, 16 min 9 s for the default
    suite; two workers whose runs each took both cores' threads, 13 min 21 s (22 min of CPU
    time against 16: contended threads); a core each, 8 min 28 s."""
    worker = getattr(config, "workerinput", None)
    if worker is None or not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    workers = int(worker["workercount"])
    if workers > len(cores):
        return
    index = int(worker["workerid"].removeprefix("gw"))
    share = cores[index * len(cores) // workers : (index + 1) * len(cores) // workers]
    os.sched_setaffinity(0, share)
    import torch

    torch.set_num_threads(len(share))


def use_every_core() -> None:
    """In a process a test starts: leave the worker's one core (above) for every core, for
    code that takes another path, or races, only when it has several."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, range(os.cpu_count() or 1))  # the kernel keeps the allowed ones


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
def colours(tmp_path_factory) -> Path:
    """The learnable colour set, 3 classes x 40 images."""
    return write_colour_dataset(tmp_path_factory.mktemp("colours") / "set", 40)


@pytest.fixture(scope="session")
def textures(tmp_path_factory) -> Path:
    """The real synthetic texture generator, tiny: 3 classes x 8 images, 64 px."""
    return ensure_synthetic_textures(tmp_path_factory.mktemp("textures") / "set", 8, 64, 0)


def run_cli(
    *overrides: str,
    tmp: Path,
    env: dict | None = None,
    timeout: int = 300,
    multirun=False,
    module: str = "src.run",
):
    """`python -m src.run` in a subprocess with FAST settings, data, store and sweeps under
    tmp (a `tracking.uri=...` among the overrides wins over the store under tmp)."""
    own_dataset = any(o.startswith("dataset=") for o in overrides)
    fresh_store(Path(tmp) / "mlruns" / "mlflow.db")
    command = [
        sys.executable,
        "-m",
        module,
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


def default_ctrl_c() -> None:
    """In a child process (preexec_fn): Ctrl-C as in a terminal, even when pytest runs in
    the background (a shell's background jobs ignore SIGINT, and children inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


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
def postgres():
    """A PostgreSQL server's URL, for the tests that need one: IMGSWEEP_TEST_POSTGRES if set
    (`.ci/run` sets it; a superuser, as it creates databases), else a throwaway cluster
    started here from the installed binaries. Skips when there is neither."""
    given = os.environ.get("IMGSWEEP_TEST_POSTGRES")
    try:
        sqlalchemy.engine.make_url("postgresql://").get_dialect().import_dbapi()
    except ImportError as error:
        pytest.skip(f"no PostgreSQL driver ({error.name}): pip install -e '.[postgres]'")
    if given:
        try:
            run_sql(given, "SELECT 1")
        except sqlalchemy.exc.SQLAlchemyError as error:
            reason = str(error).splitlines()[0]
            pytest.skip(f"IMGSWEEP_TEST_POSTGRES={given} is not reachable: {reason}")
        yield given
        return
    if postgres_cluster.binaries() is None:
        pytest.skip(
            "no PostgreSQL: set IMGSWEEP_TEST_POSTGRES=postgresql://... or install it "
            "(apt-get install postgresql)"
        )
    folder = Path(tempfile.mkdtemp(prefix="imgsweep-postgres-"))
    try:
        url = postgres_cluster.start(folder)
    except RuntimeError as error:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"a PostgreSQL cluster could not be started here: {error}")
    try:
        yield url
    finally:
        postgres_cluster.stop(folder)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def new_database(postgres):
    """Makes empty databases on the test server: `new_database("optuna")` → its URL."""

    def make(prefix: str = "db") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        run_sql(postgres, f"CREATE DATABASE {name}")
        return postgres.rsplit("/", 1)[0] + f"/{name}"

    return make


def run_sql(url: str, *statements: str) -> None:
    """Run statements on the server at `url`, outside any transaction."""
    engine = sqlalchemy.create_engine(
        url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5}
    )
    try:
        with engine.connect() as connection:
            for statement in statements:
                connection.execute(sqlalchemy.text(statement))
    finally:
        engine.dispose()


def start_mlflow_server(folder: Path, backend: str, port: int | None = None):
    """`mlflow server` on loopback with this backend store and artifacts under `folder`;
    returns (process, uri) once it answers."""
    port = port or free_port()
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
        backend,
        "--artifacts-destination",
        str(folder / "artifacts"),
        "--workers",
        "1",
    ]
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "server.log").open("a") as log:  # its own process group: it has workers
        server = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2):
                return server, uri
        except OSError:
            if time.time() > deadline or server.poll() is not None:
                kill_mlflow_server(server)
                pytest.fail(f"mlflow server did not start: {(folder / 'server.log').read_text()}")
            time.sleep(0.5)


def stop_mlflow_server(server) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=5)  # its job consumers take their time; the tests are done with it
    except subprocess.TimeoutExpired:
        kill_mlflow_server(server)


def kill_mlflow_server(server) -> None:
    """SIGKILL to the server and its workers, as if its machine died."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)
    server.wait()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` on a free loopback port (SQLite backend, local artifacts)."""
    folder = tmp_path_factory.mktemp("server")
    server, uri = start_mlflow_server(folder, f"sqlite:///{folder}/db.sqlite")
    try:
        yield uri
    finally:
        stop_mlflow_server(server)
