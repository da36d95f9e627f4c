"""One tiny real training run, shared by the deployment tests: its store, run and model."""

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import ROOT, run_cli

CLASSES = ["dotted", "leopard", "striped"]


@dataclass(frozen=True)
class TrainedRun:
    folder: Path
    uri: str  # the run's tracking store
    run_id: str

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(self.uri)


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> TrainedRun:
    folder = tmp_path_factory.mktemp("trained")
    result = run_cli(tmp=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    uri = f"sqlite:///{folder}/mlruns/mlflow.db"
    client = MlflowClient(uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return TrainedRun(folder, uri, run.info.run_id)


@pytest.fixture(autouse=True)
def forget_the_store():
    """Tests that load or register in this process point MLflow at their store (which also
    sets MLFLOW_TRACKING_URI): undo that after each test."""
    yield
    mlflow.set_tracking_uri(None)


def run_module(
    module: str, *arguments: str, env: dict | None = None, cwd: Path = ROOT, timeout: int = 180
):
    """`python -m <module> key=value ...` as a user runs it (this checkout's code, from `cwd`)."""
    environment = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    environment.update({"PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT), **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", module, *arguments],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
    )


def readme_python_block(containing: str) -> str:
    """The README's ```python block that contains `containing`: documented code is tested."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if containing in b]
    return block
