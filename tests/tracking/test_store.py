"""The tracking store the small commands (register, predict, export) choose, and the file
of a SQLite store."""

from pathlib import Path

import mlflow
import pytest

from src.errors import UserError
from src.tracking.store import sqlite_file, use_tracking_store


@pytest.fixture(autouse=True)
def forget_the_store():
    """use_tracking_store points this process's MLflow at a store (and sets
    MLFLOW_TRACKING_URI, as MLflow does): undo that after each test."""
    yield
    mlflow.set_tracking_uri(None)


def test_the_store_is_the_argument_then_the_environment_then_the_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("given", "environment", "mlruns"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "mlflow.db").touch()
    expected = {
        name: f"sqlite:///{tmp_path}/{name}/mlflow.db"
        for name in ("given", "environment", "mlruns")
    }
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///environment/mlflow.db")
    assert use_tracking_store("sqlite:///given/mlflow.db") == expected["given"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///environment/mlflow.db")
    assert use_tracking_store(None) == expected["environment"]
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert use_tracking_store(None) == expected["mlruns"]


def test_a_missing_sqlite_store_is_named_not_created(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(UserError, match=f"no MLflow store at {tmp_path}/mlruns/mlflow.db"):
        use_tracking_store(None)
    assert not (tmp_path / "mlruns").exists()


def test_the_file_of_a_sqlite_uri_is_relative_or_absolute_as_written():
    assert sqlite_file("sqlite:///mlruns/mlflow.db") == Path("mlruns/mlflow.db")
    assert sqlite_file("sqlite:////abs/x.db") == Path("/abs/x.db")
    assert sqlite_file("http://127.0.0.1:5000") is None
    assert sqlite_file("postgresql://u@host/db") is None
    assert sqlite_file("mlruns") is None
