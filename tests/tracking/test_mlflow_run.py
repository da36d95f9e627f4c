"""Where runs go: the store's URI, its reachability, and runs never left RUNNING."""

import time

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from src.errors import UserError
from src.tracking.mlflow_run import (
    check_reachable,
    experiment_id,
    flatten,
    resolve_uri,
    runs_url,
    tracked_run,
)


def test_relative_sqlite_uri_is_made_absolute_against_the_start_folder(tmp_path):
    assert (
        resolve_uri("sqlite:///mlruns/mlflow.db", tmp_path)
        == f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    )
    assert resolve_uri("sqlite:////abs/x.db", tmp_path) == "sqlite:////abs/x.db"


def test_unreachable_server_fails_fast_with_a_clear_message():
    start = time.time()
    with pytest.raises(UserError, match="tracking server http://127.0.0.1:9 cannot be reached"):
        check_reachable("http://127.0.0.1:9")
    assert time.time() - start < 15


def test_experiment_artifacts_go_under_the_store_folder(tmp_path):
    uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    check_reachable(uri)
    exp = MlflowClient(uri).get_experiment(experiment_id(uri, "my set"))
    assert exp.artifact_location == (tmp_path / "store" / "artifacts" / "my_set").as_uri()
    assert experiment_id(uri, "my set") == exp.experiment_id


def test_a_failing_run_ends_failed_with_the_error_recorded(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    with pytest.raises(UserError), tracked_run(experiment_id(uri, "e"), "r") as run:
        raise UserError("no class folders in /x")
    finished = MlflowClient(uri).get_run(run.info.run_id)
    assert finished.info.status == "FAILED"
    assert finished.data.tags["error"] == "UserError: no class folders in /x"


def test_flatten_gives_dotted_keys():
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": None}) == {
        "a.b": 1,
        "a.c.d": [1, 2],
        "e": None,
    }


def test_runs_url_points_at_the_runs_table():
    assert runs_url("sqlite:///x.db", "3") == "http://127.0.0.1:5000/#/experiments/3/runs"
    assert runs_url("http://h:5000/", "3", "abc") == "http://h:5000/#/experiments/3/runs/abc"
