"""A tracking server that goes away in the middle of a run: bounded retries, then one line
that says where the training is kept and how to continue; nothing trained is lost."""

import os
import re
import shlex
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient

from src.tracking import mlflow_run
from tests.conftest import (
    FAST,
    ROOT,
    free_port,
    kill_mlflow_server,
    start_mlflow_server,
    stop_mlflow_server,
)


@pytest.fixture
def clean_retry_environment(monkeypatch):
    for name in mlflow_run.RETRY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(mlflow_run, "_USER_SET", set())


@pytest.mark.parametrize(
    ("seconds", "retries", "timeout"), [(120, 7, 30), (4, 3, 5), (0, 0, 5), (3600, 10, 60)]
)
def test_retry_seconds_becomes_mlflows_retry_settings(
    clean_retry_environment, seconds, retries, timeout
):
    mlflow_run.configure_retries(seconds)
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == str(retries)
    assert os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] == "1"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == str(timeout)
    waits = 2**retries - 2 if retries else 0  # urllib3: 0, 2, 4, ... s between tries
    assert waits <= max(2 * seconds, 2)


def test_mlflows_own_variables_win(clean_retry_environment, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    monkeypatch.setattr(mlflow_run, "_USER_SET", {"MLFLOW_HTTP_REQUEST_MAX_RETRIES"})
    mlflow_run.configure_retries(120)
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2"


@pytest.mark.slow  # starts an mlflow server (13 s); the slow run starts one anyway
def test_only_a_server_that_does_not_answer_is_unreachable(mlflow_server):
    assert not mlflow_run.server_unreachable(mlflow_server)
    assert mlflow_run.server_unreachable(f"http://127.0.0.1:{free_port()}")
    assert not mlflow_run.server_unreachable("sqlite:///nowhere/mlflow.db")


RUN = [
    *FAST,
    "classifier=dnn",
    "resolution.size=64",
    "classifier.epochs=25",
    "classifier.freeze_backbone=true",
    "classifier.augment=false",
    "classifier.patience=0",
    "tracking.retry_seconds=4",
    "dataset.synthetic.images_per_class=8",
    "dataset.synthetic.image_size=64",
]


@pytest.mark.slow
def test_a_run_outlives_its_tracking_server_and_resumes_when_it_is_back(tmp_path):
    port, folder = free_port(), tmp_path / "server"
    backend = f"sqlite:///{folder}/db.sqlite"
    server, uri = start_mlflow_server(folder, backend, port)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MLFLOW_TRACKING_URI": uri}
    for name in mlflow_run.RETRY_VARIABLES:
        env.pop(name, None)
    command = [sys.executable, "-m", "src.run", *RUN, f"paths.data_dir={tmp_path}/data"]
    run = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 180
    while not list((tmp_path / "data" / "checkpoints").glob("*/last.pt")):
        assert run.poll() is None and time.time() < deadline, run.communicate()
        time.sleep(0.2)
    kill_mlflow_server(server)  # its machine dies: no goodbye
    started = time.time()
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 1
    assert time.time() - started < 60  # bounded: about retry_seconds per failed call, twice
    line = stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: the MLflow tracking server {uri} stopped answering")
    assert "Traceback" not in stderr
    (checkpoint,) = (tmp_path / "data" / "checkpoints").glob("*/last.pt")
    assert f"is kept in {checkpoint}" in line
    resume = re.search(
        r"continue with: MLFLOW_TRACKING_URI=\S+ (python -m src\.run .*resume=\w+)$", line
    )
    resume = resume.group(1)

    server, _ = start_mlflow_server(folder, backend, port)  # back, with the same store
    try:
        again = subprocess.run(
            [sys.executable, *shlex.split(resume)[1:]],  # `python`: this interpreter
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert again.returncode == 0, again.stderr[-3000:]
        client = MlflowClient(uri)
        run_id = resume.rsplit("resume=", 1)[1]
        finished = client.get_run(run_id)
        assert finished.info.status == "FINISHED"
        for metric in ("train/loss", "val/class_avg_accuracy"):
            steps = sorted(m.step for m in client.get_metric_history(run_id, metric))
            assert steps == list(range(25)), metric  # the epoch the server missed is there too
    finally:
        stop_mlflow_server(server)
