"""A run against a real MLflow tracking server, as a team shares one."""

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import run_cli

pytestmark = pytest.mark.slow  # an MLflow tracking server and a run


def test_run_lands_on_a_tracking_server_with_artifacts_and_model(mlflow_server, tmp_path):
    result = run_cli(f"tracking.uri={mlflow_server}", tmp=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("synthetic_textures")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and "test/accuracy" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert "evaluation/roc_test.png" in artifacts
    assert client.search_logged_models([experiment.experiment_id])
    assert f"{mlflow_server}/#/experiments/{experiment.experiment_id}/runs/" in result.stdout
    local = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")  # the test's own, unused
    assert not local.search_runs([e.experiment_id for e in local.search_experiments()])
