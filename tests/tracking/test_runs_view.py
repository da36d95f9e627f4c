"""The runs table a printed link opens: a saved view, as MLflow 3's UI stores and reads it
(an experiment tag `mlflow.sharedViewState.<key>` holding a JSON envelope whose `state` is
the table's state as JSON). tests/tracking/test_mlflow_ui.py opens it in Chromium."""

import json

import pytest
from mlflow.tracking import MlflowClient

from src.tracking.mlflow_run import experiment_id, runs_url
from src.tracking.runs_view import save_runs_view, swept_params
from tests.conftest import fresh_store

OBJECTIVE = "metrics.`val/class_avg_accuracy`"


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "mlruns" / "mlflow.db"
    fresh_store(path)
    uri = f"sqlite:///{path}"
    return uri, experiment_id(uri, "textures")


def views(uri: str, experiment: str) -> dict[str, dict]:
    """The experiment's saved views by key, each envelope with its state parsed."""
    tags = MlflowClient(uri).get_experiment(experiment).tags
    found = {}
    for key, value in tags.items():
        if key.startswith("mlflow.sharedViewState."):
            envelope = json.loads(value)
            found[key.removeprefix("mlflow.sharedViewState.")] = {
                **envelope,
                "state": json.loads(envelope["state"]),
            }
    return found


def test_the_view_shows_the_metrics_that_compare_runs_sorted_best_first(store):
    uri, experiment = store
    key = save_runs_view(uri, experiment)
    view = views(uri, experiment)[key]
    assert isinstance(view["name"], str) and isinstance(view["createdAt"], int)
    state = view["state"]
    assert (state["orderByKey"], state["orderByAsc"]) == (OBJECTIVE, False)
    assert state["searchFilter"] == ""
    assert state["selectedColumns"] == [
        OBJECTIVE,
        "metrics.`test/accuracy`",
        "metrics.`test/class_avg_accuracy`",
        "metrics.`test/ece`",
        "tags.`model`",
        "tags.`classifier`",
    ]
    assert state["columnOrder"][0] == OBJECTIVE  # first on screen, not where its name sorts


def test_saving_again_updates_the_one_view_instead_of_adding_one(store):
    uri, experiment = store
    first = save_runs_view(uri, experiment)
    created = views(uri, experiment)[first]["createdAt"]
    assert save_runs_view(uri, experiment) == first
    assert save_runs_view(uri, experiment, study="svm", params=["seed"]) != first
    assert save_runs_view(uri, experiment, study="svm", params=["seed", "classifier.C"])
    saved = views(uri, experiment)
    assert len(saved) == 2 and saved[first]["createdAt"] == created


def test_a_studys_view_shows_its_trials_with_the_searched_values(store):
    uri, experiment = store
    key = save_runs_view(uri, experiment, study="svm", params=["resolution.size", "seed"])
    state = views(uri, experiment)[key]["state"]
    assert state["searchFilter"] == "tags.`optuna.study` = 'svm'"
    assert {"params.`resolution.size`", "params.`seed`"} <= set(state["selectedColumns"])


def test_a_refinement_is_sorted_by_its_final_models_objective(store):
    """A refinement's `val/class_avg_accuracy` holds one value per epoch; its final model's
    is `val/eval_class_avg_accuracy` (what the sweep maximised, and src.register uses)."""
    uri, experiment = store
    key = save_runs_view(uri, experiment, refined=True)
    state = views(uri, experiment)[key]["state"]
    assert state["orderByKey"] == "metrics.`val/eval_class_avg_accuracy`"
    assert OBJECTIVE in state["selectedColumns"]


def test_a_searched_group_shows_as_the_value_that_names_its_option():
    choices = {"model": "resnet18", "resolution": "224", "classifier": "svm"}
    config = {"resolution": {"size": 224, "preprocessing": "letterbox"}, "model": {"name": "x"}}
    searched = ["classifier.lr", "resolution", "model", "seed"]
    assert swept_params(searched, choices, config) == ["classifier.lr", "resolution.size", "seed"]


def test_the_link_opens_the_view_in_the_training_view():
    url = runs_url("http://host:5000", "3", view="best-first-study-svm")
    assert url == (
        "http://host:5000/#/experiments/3/runs"
        "?workflowType=machine_learning&viewStateShareKey=best-first-study-svm"
    )
