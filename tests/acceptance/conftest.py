"""A user's working folder for the README's commands, and the way they are typed there.

Every command runs through bash in one folder, as a user following the README would run
them, one after another: the default dataset is generated once, the store in `mlruns/`
fills up, the models registered there are the ones served. Commands are shrunk only by
`shrunk`: smaller data, fewer epochs and trials, a smaller resolution, random weights.
"""

import contextlib
import http.server
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from tests.acceptance import readme
from tests.conftest import ROOT, default_ctrl_c, fresh_store

# What shrinks a `python -m src.run` command; nothing else is overridden (the batch size, the
# schedule and every other default are what the user gets).
SMALL = ["dataset.max_images_per_class=8", "resolution.size=32", "model.weights=none"]
EPOCHS = "classifier.epochs=1"
FINDER_STEPS = "classifier.lr_find.steps=20"  # the range test's length, as epochs are a run's
TRIALS = 2  # hydra.sweeper.n_trials for a sweep; a larger total in the README becomes TRIALS + 1
BUDGET = "30s"  # hydra.sweeper.budget for a budgeted sweep: room for a few shrunk trials
AUTO_BUDGET = "100s"  # sweep=auto's: its 6 SVM trials, a refining one, and the champion


def shrunk(command: str) -> str:
    """The command as typed, with the shrinking overrides appended (or, for a sweep's
    trial count, put in place of the README's)."""
    if not re.search(r"-m src\.(run|lr_find|label_issues)\b", command) or "resume=" in command:
        return command  # a resumed run takes its own command line back
    words = [*SMALL]
    if "src.lr_find" in command:
        words.append(FINDER_STEPS)
    refining = re.search(r"classifier=(dnn|svm_dnn_refined)\b|sweep=refine_dnn", command)
    if refining:
        words.append(EPOCHS)
    # a budget of BUDGET in place of the README's (its trials are the shrunk ones)
    budget = AUTO_BUDGET if "sweep=auto" in command else BUDGET
    command = re.sub(r"hydra\.sweeper\.budget=\S+", f"hydra.sweeper.budget={budget}", command)
    if "hydra.sweeper.budget=" in command:  # the budget ends it, not a count
        return f"{command} {' '.join(words)}"
    if " -m " in command and "sweep=" in command:
        if "hydra.sweeper.n_trials=" in command:
            command = re.sub(r"hydra\.sweeper\.n_trials=\d+", f"n_trials={TRIALS + 1}", command)
            command = command.replace(" n_trials=", " hydra.sweeper.n_trials=")
        else:
            words.append(f"hydra.sweeper.n_trials={TRIALS}")
    return f"{command} {' '.join(words)}"


class Workspace:
    """The user's folder, and a shell in it."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.home = folder / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        bin_dir = str(Path(sys.executable).parent)  # the venv's python, pip, mlflow, torchrun
        self.env = {
            **{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "HOME": str(self.home),  # `~/pics/fashion` is the user's
            "PYTHONPATH": str(ROOT),  # this checkout's src/, whichever is installed
            "PYTHONUNBUFFERED": "1",
        }
        fresh_store(folder / "mlruns" / "mlflow.db")

    def run(self, command: str, timeout: int = 600, **env) -> subprocess.CompletedProcess:
        result = subprocess.run(
            ["bash", "-c", command],
            cwd=self.folder,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        result.command = command
        return result

    def start(self, command: str, log: str) -> subprocess.Popen:
        """A command left running (a server, a run to interrupt), in its own process group."""
        with (self.folder / log).open("w") as out:
            return subprocess.Popen(
                ["bash", "-c", f"exec env {command}"],  # env: `VAR=x cmd` as typed
                cwd=self.folder,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                text=True,
                preexec_fn=default_ctrl_c,
            )

    def python(self, script: str, timeout: int = 300) -> subprocess.CompletedProcess:
        path = self.folder / "readme_script.py"
        path.write_text(script)
        return self.run(f"python {path.name}", timeout)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, (
        f"{result.command}\nexit {result.returncode}\n{result.stdout[-3000:]}\n"
        f"{result.stderr[-3000:]}"
    )
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result


def command(text: str) -> str:
    """The README's command that is `text`, or else the one that starts with it: there must
    be exactly one."""
    every = readme.commands()
    found = [c for c in every if c == text] or [c for c in every if c.startswith(text)]
    assert len(found) == 1, f"README has {len(found)} commands starting {text!r}"
    return found[0]


def store(workspace) -> MlflowClient:
    return MlflowClient(f"sqlite:///{workspace.folder}/mlruns/mlflow.db")


def run_id_of(output: str) -> str:
    """The id a run prints when it starts."""
    ids = re.findall(r"^run (\w{32}) started", output, re.M)
    assert ids, output[-2000:]
    return ids[-1]


def stop(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_for(url: str, process: subprocess.Popen, seconds: float = 180) -> None:
    deadline = time.time() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            assert process.poll() is None, f"exited {process.returncode}"
            assert time.time() < deadline, f"{url} did not answer in {seconds} s"
            time.sleep(0.5)


def texture_jpeg(path: Path, label: str, seed: int, size: int = 96) -> Path:
    """A small real JPEG of one of the three texture classes (learnable by colour/pattern)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    if label == "striped":
        pattern = ((x + y + rng.integers(0, 8)) // 6) % 2
    elif label == "dotted":
        pattern = ((x % 12 - 6) ** 2 + (y % 12 - 6) ** 2 < 10).astype(int)
    else:  # leopard: blotches
        pattern = (rng.random((size // 8, size // 8)) > 0.6).repeat(8, 0).repeat(8, 1)
    base = rng.integers(60, 200, 3)
    pixels = np.where(pattern[..., None] > 0, base, 255 - base).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, "JPEG", quality=90)
    return path


@pytest.fixture(scope="session")
def workspace(tmp_path_factory) -> Workspace:
    space = Workspace(tmp_path_factory.mktemp("user"))
    for i, label in enumerate(["dotted", "leopard", "striped"] * 10):
        texture_jpeg(space.home / "pics" / "fashion" / label / f"{label}_{i}.jpg", label, i)
    texture_jpeg(space.folder / "my_image.jpg", "striped", 99, 200)
    texture_jpeg(space.folder / "a.jpg", "dotted", 100)  # the ONNX example's two files
    Image.open(space.folder / "a.jpg").save(space.folder / "b.png")
    for i, label in enumerate(["dotted", "striped", "leopard"]):
        texture_jpeg(space.folder / "path" / "to" / "folder_or_image" / f"{i}.jpg", label, 200 + i)
    return space


@pytest.fixture(scope="session")
def image_host():
    """A web server on loopback serving texture JPEGs: /<label>/<n>.jpg (the URL list's hosts)."""
    images: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            body = images.get(self.path)
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "image/jpeg" if body else "text/plain")
            self.end_headers()
            self.wfile.write(body or b"not found")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.images = images
    server.base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield server
    finally:
        server.shutdown()
