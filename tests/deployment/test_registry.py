"""Registering models: from a run id, or a sweep's best trial; loaded back by alias."""

import base64
import uuid

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from src.deployment.registry import (
    OBJECTIVE,
    RANDOM_WEIGHTS_NOTE,
    RANDOM_WEIGHTS_TAG,
    best_run_of_study,
    register_run,
    version_description,
    version_tags,
)
from src.errors import UserError
from src.register import register
from tests.conftest import image_bytes
from tests.deployment.conftest import CLASSES, run_module


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make_run(
    client: MlflowClient, study: str, metrics: dict, status: str = "FINISHED", **tags
) -> str:
    experiment = client.get_experiment_by_name("Default") or client.get_experiment("0")
    run = client.create_run(experiment.experiment_id, tags={"optuna.study": study, **tags})
    for key, value in metrics.items():
        client.log_metric(run.info.run_id, key, value)
    client.set_terminated(run.info.run_id, status)
    return run.info.run_id


def test_register_by_run_id_carries_the_runs_metrics_and_loads_by_alias(trained):
    name = unique("fashion-texture")
    result = run_module(
        "src.register",
        f"run_id={trained.run_id}",
        f"name={name}",
        "alias=champion",
        f"tracking_uri={trained.uri}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"registered run {trained.run_id} as {name} version 1" in result.stdout
    client = trained.client
    version = client.get_model_version_by_alias(name, "champion")
    run = client.get_run(trained.run_id)
    assert int(version.version) == 1 and version.run_id == trained.run_id
    assert float(version.tags[OBJECTIVE]) == pytest.approx(run.data.metrics[OBJECTIVE], abs=1e-5)
    assert float(version.tags["test/accuracy"]) == pytest.approx(
        run.data.metrics["test/accuracy"], abs=1e-5
    )
    assert version.tags["classifier"] == "svm" and version.tags["run_id"] == trained.run_id
    assert f"{OBJECTIVE}: {run.data.metrics[OBJECTIVE]:.4f}" in version.description
    # the tests train from random weights (model.weights=none): the version says so
    assert version.tags[RANDOM_WEIGHTS_TAG].startswith("true")
    assert version.description.splitlines()[0] == RANDOM_WEIGHTS_NOTE
    assert f"  note: {RANDOM_WEIGHTS_NOTE}" in result.stdout
    assert f"#/models/{name}/versions/1" in result.stdout

    mlflow.set_tracking_uri(trained.uri)
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    image = base64.b64encode(image_bytes(size=(64, 48))).decode()
    (row,) = model.predict(pd.DataFrame({"image": [image]})).to_dict("records")
    assert row["label"] in CLASSES and row["score"] == pytest.approx(row[row["label"]])


def test_registering_again_makes_a_new_version_and_moves_the_alias(trained):
    name, client = unique("moving"), trained.client
    run = client.get_run(trained.run_id)
    first = register_run(client, run, name, "champion")
    second = register_run(client, run, name, "champion")
    assert (int(first.version), int(second.version)) == (1, 2)
    assert int(client.get_model_version_by_alias(name, "champion").version) == 2


def test_a_studys_best_trial_is_chosen_by_validation_accuracy_never_by_test(trained):
    client, study = trained.client, unique("study")
    chosen = make_run(client, study, {OBJECTIVE: 0.80, "test/class_avg_accuracy": 0.10})
    make_run(client, study, {OBJECTIVE: 0.60, "test/class_avg_accuracy": 0.99})
    make_run(client, study, {OBJECTIVE: 0.95}, status="FAILED")  # a crashed trial
    make_run(client, study, {})  # stopped before it reported
    # pruned: its run ends FINISHED with a good epoch logged, but it has no final model
    make_run(client, study, {OBJECTIVE: 0.97}, **{"optuna.pruned": "true"})
    make_run(client, study, {OBJECTIVE: 0.96}, **{"optuna.state": "PRUNED"})
    # a refinement: its last epoch scored 0.9, its final (best-epoch) model 0.7
    make_run(client, study, {OBJECTIVE: 0.9, "val/eval_class_avg_accuracy": 0.7})
    make_run(client, unique("other-study"), {OBJECTIVE: 1.0})
    assert best_run_of_study(client, study).info.run_id == chosen


def test_only_a_version_from_random_weights_is_marked_so(trained):
    client = trained.client
    random = client.get_run(make_run(client, "w", {OBJECTIVE: 0.9}, pretrained="false"))
    assert RANDOM_WEIGHTS_TAG in version_tags(random)
    assert version_description(random).startswith(RANDOM_WEIGHTS_NOTE + "\n")
    pretrained = client.get_run(make_run(client, "w", {OBJECTIVE: 0.9}, pretrained="true"))
    assert RANDOM_WEIGHTS_TAG not in version_tags(pretrained)
    assert "random weights" not in version_description(pretrained)


def test_a_refined_runs_final_metrics_are_the_ones_on_its_version(trained):
    client = trained.client
    run_id = make_run(
        client,
        "refined",
        {OBJECTIVE: 0.9, "val/eval_class_avg_accuracy": 0.7, "test/eval_accuracy": 0.6},
    )
    run = client.get_run(run_id)
    assert version_tags(run)[OBJECTIVE] == "0.7" and version_tags(run)["test/accuracy"] == "0.6"
    assert f"{OBJECTIVE}: 0.7000" in version_description(run)


def test_register_by_study_registers_its_best_trials_model(trained):
    client, study, name = trained.client, unique("sweep"), unique("swept")
    client.set_tag(trained.run_id, "optuna.study", study)
    client.set_tag(trained.run_id, "optuna.trial", "3")
    make_run(client, study, {OBJECTIVE: 0.1})  # a worse trial
    version = register_run(client, best_run_of_study(client, study), name, "champion")
    assert version.run_id == trained.run_id
    assert version.tags["optuna.study"] == study and version.tags["optuna.trial"] == "3"
    assert f"Best trial (3) of study {study}" in version.description


def test_a_study_without_finished_trials_or_without_runs_is_a_clear_error(trained):
    client, study = trained.client, unique("crashed")
    make_run(client, study, {OBJECTIVE: 0.9}, status="FAILED")
    with pytest.raises(UserError, match=f"study '{study}' has no completed trial run"):
        best_run_of_study(client, study)
    with pytest.raises(UserError, match="no runs of study 'nonesuch'.*optuna.study=nonesuch"):
        best_run_of_study(client, "nonesuch")


def test_a_failed_run_or_a_run_without_model_is_not_registered(trained):
    client = trained.client
    failed = client.get_run(make_run(client, "x", {OBJECTIVE: 0.9}, status="FAILED"))
    with pytest.raises(UserError, match="is FAILED; only a finished run is registered"):
        register_run(client, failed, unique("m"), None)
    bare = client.get_run(make_run(client, "x", {OBJECTIVE: 0.9}))
    with pytest.raises(UserError, match="has no logged model named 'model'"):
        register_run(client, bare, unique("m"), None)


def test_an_invalid_alias_leaves_no_version_behind(trained):
    client, name = trained.client, unique("reserved")
    run = client.get_run(trained.run_id)
    with pytest.raises(UserError, match="alias 'latest'.*reserved"):
        register_run(client, run, name, "latest")
    assert client.search_model_versions(f"name = '{name}'") == []


def test_an_unknown_run_id_is_a_one_line_error_without_traceback(trained):
    result = run_module(
        "src.register", "run_id=0123456789abcdef", "name=m", f"tracking_uri={trained.uri}"
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: no run with id '0123456789abcdef' in {trained.uri}"
    ]


def test_register_needs_exactly_one_of_run_id_and_study(trained):
    for both_or_neither in ([], ["run_id=abc", "study=s"]):
        with pytest.raises(UserError, match="give run_id=<MLflow run id> or study="):
            register(["name=m", f"tracking_uri={trained.uri}", *both_or_neither])


def test_a_missing_store_is_named_instead_of_created(tmp_path):
    result = run_module("src.register", "run_id=x", "name=m", cwd=tmp_path)
    assert result.returncode == 1 and "no MLflow store at" in result.stderr
    assert not (tmp_path / "mlruns").exists()
