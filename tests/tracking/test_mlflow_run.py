"""Where runs go: the store's URI, its reachability, and runs never left RUNNING."""

import os
import time

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from src.errors import UserError
from src.tracking import mlflow_run
from src.tracking.mlflow_run import (
    SAMPLING_VARIABLE,
    check_reachable,
    experiment_id,
    finish_parent,
    flatten,
    model_version_url,
    resolve_uri,
    runs_url,
    tracked_run,
)
from src.tracking.parent_runs import find_or_create_parent
from tests.conftest import fresh_store


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


def test_runs_url_points_at_the_runs_table_of_the_training_view():
    # the parameter inside the fragment: the UI's router reads it there (tests/tracking/
    # test_mlflow_ui.py opens these links in Chromium)
    assert (
        runs_url("sqlite:///x.db", "3")
        == "http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning"
    )
    assert (
        runs_url("http://h:5000/", "3", "abc")
        == "http://h:5000/#/experiments/3/runs/abc?workflowType=machine_learning"
    )
    assert model_version_url("sqlite:///x.db", "fashion texture", "2") == (
        "http://127.0.0.1:5000/#/models/fashion%20texture/versions/2"
    )


def test_a_parent_ends_with_an_end_time_each_time_its_sweep_ends(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    fresh_store(tmp_path / "mlflow.db")
    client, experiment = MlflowClient(uri), experiment_id(uri, "e")
    parent = find_or_create_parent(uri, experiment, "optuna:s", "s", {})
    finish_parent(uri, parent)
    first = client.get_run(parent).info
    assert first.status == "FINISHED" and first.end_time >= first.start_time
    # the study is continued: its parent reopens, and ends again later
    assert find_or_create_parent(uri, experiment, "optuna:s", "s", {}) == parent
    assert client.get_run(parent).info.status == "RUNNING"
    time.sleep(0.01)
    finish_parent(uri, parent, "KILLED")
    again = client.get_run(parent).info
    assert again.status == "KILLED" and again.end_time > first.end_time


def test_system_metrics_are_sampled_while_a_run_works(tmp_path, monkeypatch):
    monkeypatch.setattr(mlflow_run, "_USER_SET", set())
    monkeypatch.setenv(SAMPLING_VARIABLE, "10")  # restored after the test
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    fresh_store(tmp_path / "mlflow.db")
    mlflow.set_tracking_uri(uri)
    with tracked_run(experiment_id(uri, "e"), "r", system_metrics=True, sampling_seconds=0.2):
        run_id = mlflow.active_run().info.run_id
        time.sleep(1.5)
    client = MlflowClient(uri)
    metrics = client.get_run(run_id).data.metrics
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(
        metrics
    )
    assert len(client.get_metric_history(run_id, "system/cpu_utilization_percentage")) >= 2
    with tracked_run(experiment_id(uri, "e"), "off", system_metrics=False):
        time.sleep(0.5)
        off = mlflow.active_run().info.run_id
    assert not any(key.startswith("system/") for key in client.get_run(off).data.metrics)


def test_a_users_sampling_interval_wins(tmp_path, monkeypatch):
    monkeypatch.setattr(mlflow_run, "_USER_SET", {SAMPLING_VARIABLE})
    monkeypatch.setenv(SAMPLING_VARIABLE, "30")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    fresh_store(tmp_path / "mlflow.db")
    mlflow.set_tracking_uri(uri)
    with tracked_run(experiment_id(uri, "e"), "r", system_metrics=True, sampling_seconds=1):
        assert os.environ[SAMPLING_VARIABLE] == "30"
