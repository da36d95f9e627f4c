"""The README's quick start run twice in a folder of the user's (`python -m src.run`, shrunk
only in data and size), then what the README says to do with it: its Python recipe for the
test predictions run as written, in that folder. Neither leaves a file there uninvited, the
second run is told apart from the first by its name, and the run page's charts open on the
test scores."""

import json
import os
import re
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from tests.acceptance import readme
from tests.acceptance.claims import LOAD_TABLE
from tests.conftest import (
    FAST,
    TINY_SYNTHETIC,
    fresh_store,
    start_mlflow_server,
    stop_mlflow_server,
)
from tests.evaluation.test_results_page import needs_chromium
from tests.tracking.test_mlflow_ui import opened

EXPECTED = ["data", "mlruns"]  # what a run may write where it is started (README, paths.*)


def user_environment() -> dict:
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    environment.pop("MLFLOW_TRACKING_URI", None)  # the README's default store
    return environment


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory):
    """A folder of the user's in which the same command ran twice; (folder, its runs, oldest
    first)."""
    folder = tmp_path_factory.mktemp("user")
    fresh_store(folder / "mlruns" / "mlflow.db")  # the store the run makes there, made faster
    command = [sys.executable, "-m", "src.run", *FAST, *TINY_SYNTHETIC]
    for _ in range(2):
        result = subprocess.run(
            command, cwd=folder, capture_output=True, text=True, timeout=300, env=user_environment()
        )
        assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{folder}/mlruns/mlflow.db")
    experiments = [e.experiment_id for e in client.search_experiments()]
    return folder, client.search_runs(experiments, order_by=["attributes.start_time ASC"])


def test_the_same_command_again_is_a_run_of_its_own_name(user_folder):
    _, runs = user_folder
    assert [r.info.run_name for r in runs] == ["svm-resnet18-32px", "svm-resnet18-32px-2"]


def test_the_readmes_load_table_recipe_gives_every_runs_test_predictions(user_folder):
    folder, runs = user_folder
    assert sorted(os.listdir(folder)) == EXPECTED  # the runs wrote nothing else there
    (recipe,) = [c for c in readme.commands() if c.startswith(LOAD_TABLE)]
    shown = "\nprint(json.dumps({'rows': len(table), 'runs': sorted(set(table['run_id']))}))"
    result = subprocess.run(
        [sys.executable, "-c", recipe + "\nimport json" + shown],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        env=user_environment(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = json.loads(result.stdout.strip().splitlines()[-1])
    assert table == {
        "rows": sum(int(r.data.params["data.test_images"]) for r in runs),
        "runs": sorted(r.info.run_id for r in runs),
    }
    assert sorted(os.listdir(folder)) == EXPECTED  # no stray mlflow.db


def chart_sections(metric_names) -> list[str]:
    """The model-metrics tab's sections in the order MLflow's UI shows them (3.17's
    getBaseChartAndSectionConfigs and extractChartSectionName): a chart per metric, in the
    section named by what comes before the name's last `/`, sections in alphabetical order,
    then the unprefixed ("Model metrics"); system/ metrics have a tab of their own."""
    names = {n.rsplit("/", 1)[0] if "/" in n else "" for n in metric_names}
    names -= {"system"}
    return sorted(names - {""}) + ([""] if "" in names else [])


def test_the_run_page_opens_on_the_test_scores_and_counts_are_params(user_folder):
    _, (run, _) = user_folder
    metrics, params = run.data.metrics, run.data.params
    assert not [name for name in metrics if name.startswith("data/")]
    assert chart_sections(metrics)[0] == "test"
    assert {"test/accuracy", "test/class_avg_accuracy", "test/ece", "test/auc_macro"} <= set(
        metrics
    )
    assert params["data.skipped_files"] == "0" and params["data.leaky_duplicates"] == "0"
    assert int(params["data.train_images"]) > 0 and params["data.test_absent_classes"] == "0"


@pytest.mark.slow  # a real `mlflow server`, and its page rendered in headless Chromium
@needs_chromium
def test_the_run_pages_model_metrics_tab_opens_on_the_test_section(user_folder, tmp_path):
    folder, (run, _) = user_folder
    store = f"sqlite:///{folder}/mlruns/mlflow.db"
    server, uri = start_mlflow_server(tmp_path / "server", store)
    try:
        route = f"experiments/{run.info.experiment_id}/runs/{run.info.run_id}/model-metrics"
        text = opened(f"{uri}/#/{route}?workflowType=machine_learning", uri, tmp_path)
    finally:
        stop_mlflow_server(server)
    # a section's heading reads: its name, its number of charts, "Add chart"
    sections = [
        name
        for name, count, button in zip(text, text[1:], text[2:], strict=False)
        if re.fullmatch(r"\(\d+\)", count) and button == "Add chart"
    ]
    assert sections[:2] == ["test", "test/dotted"] and "data" not in sections, text
    assert sections == [n for n in chart_sections(run.data.metrics) if n] + ["Model metrics"]
