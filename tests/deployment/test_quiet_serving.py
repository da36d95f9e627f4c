"""Serving logs no progress line per model file (issue 28: about 100 `Downloading artifacts`
lines), whether started as the README types it or from Python (src/deployment/scoring_server)."""

import subprocess
import time
import urllib.request

from src.deployment.scoring_server import free_port, scoring_server, stop
from tests.acceptance import readme
from tests.conftest import default_ctrl_c

PROGRESS = "Downloading artifacts"


def test_the_scoring_server_logs_no_download_progress(trained, monkeypatch):
    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    with scoring_server(f"runs:/{trained.run_id}/model", tracking_uri=trained.uri) as server:
        log = server.log.read_text()
    assert "Uvicorn running" in log, log[-2000:]  # the log is the server's
    assert PROGRESS not in log, log[-2000:]


def test_the_readmes_serve_command_logs_no_download_progress(trained, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    (typed,) = [c for c in readme.commands() if " mlflow models serve " in c]
    port = free_port()
    command = (
        typed.replace("sqlite:///mlruns/mlflow.db", trained.uri)
        .replace("models:/fashion-texture@champion", f"runs:/{trained.run_id}/model")
        .replace("-p 5001", f"-h 127.0.0.1 -p {port}")
    )
    log = tmp_path / "serve.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            ["bash", "-c", f"exec env {command}"],  # env: `VAR=x cmd` as typed
            cwd=tmp_path,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=default_ctrl_c,
        )
    try:
        answered = wait_for_ping(f"http://127.0.0.1:{port}/ping", server)
    finally:
        stop(server)
    assert answered, log.read_text()[-2000:]
    assert PROGRESS not in log.read_text(), log.read_text()[-2000:]


def wait_for_ping(url: str, server: subprocess.Popen, seconds: float = 180) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except OSError:
            time.sleep(0.25)
    return False
