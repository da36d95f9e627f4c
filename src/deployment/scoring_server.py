"""MLflow's own scoring server for a model, started from Python and stopped again.

`mlflow models serve -m <uri> --env-manager local` (the model runs in this environment, as
it was trained) on a free loopback port; the tests and `benchmarks/serving.py` use it. A
user runs the same command by hand (see the README's Deployment section).
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

STARTUP_TIMEOUT = 120  # s; loading torch, MLflow and the model takes ~10 s on 2 CPU cores


@dataclass(frozen=True)
class Server:
    url: str  # http://127.0.0.1:<port>; requests go to f"{url}/invocations"
    process_group: int  # the server and its uvicorn worker (to measure their memory)
    log: Path  # its output so far (removed when the block ends)


@contextmanager
def scoring_server(
    model_uri: str, tracking_uri: str | None = None, port: int | None = None
) -> Iterator[Server]:
    """Serve `model_uri` on 127.0.0.1 until the block ends; the server's output goes to a
    log file whose tail is shown if it fails to start."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    environment = dict(os.environ)
    # MLflow's per-file download bar, one line per file in a log (about 100 for a model)
    environment.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if tracking_uri:
        environment["MLFLOW_TRACKING_URI"] = tracking_uri
    command = [
        sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri,
        "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port),
    ]  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "server.log"
        with log.open("w") as output:
            # its own process group: stopping it also stops the uvicorn worker it starts
            server = subprocess.Popen(
                command, stdout=output, stderr=subprocess.STDOUT, env=environment,
                start_new_session=True,
            )  # fmt: skip
            try:
                wait_until_up(url, server, log)
                yield Server(url, server.pid, log)
            finally:
                stop(server)


def wait_until_up(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2):
                return
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
                raise RuntimeError(f"the scoring server did not start at {url}:\n{tail}") from None
            time.sleep(0.25)


def stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
