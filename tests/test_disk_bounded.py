"""Disk stays bounded (issue 28): a FINISHED run keeps no checkpoint while a KILLED one keeps
its own for `resume=`; a sweep keeps one logged model per study, its best trial's, which its
parent run points to; and `src.register` still registers any trial, logging its model again
by training it again exactly."""

import re
from pathlib import Path

import optuna
import pytest
import torch
from mlflow.tracking import MlflowClient

from src.pipeline import pipeline
from src.resume import checkpoint_path
from src.tracking.study_models import (
    BEST_MODEL_TAG,
    BEST_RUN_TAG,
    BEST_TRIAL_TAG,
    best_run_of_study,
    keep_best_model,
    logged_models,
)
from src.tuning.trial_link import TrialLink
from tests.conftest import fresh_store, run_cli
from tests.deployment.conftest import run_module
from tests.test_resume import interrupt_at_first_epoch, spec_of, tiny_refinement

CPU = torch.device("cpu")


@pytest.mark.slow  # two refinement runs in process (test_resume.py's story checks the end)
def test_a_killed_run_keeps_its_checkpoint_until_its_resume_finishes(textures, tmp_path):
    fresh_store(tmp_path / "m.db")
    overrides = tiny_refinement(textures, tmp_path)
    interrupt_at_first_epoch(overrides)
    client = MlflowClient(f"sqlite:///{tmp_path}/m.db")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    kept = checkpoint_path(tmp_path / "data" / "checkpoints", run.info.run_id)
    assert run.info.status == "KILLED" and kept.is_file()

    pipeline(spec_of(*overrides, f"resume={run.info.run_id}", "classifier.epochs=2"), CPU)
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    assert not kept.parent.exists()
    assert list((tmp_path / "data" / "checkpoints").iterdir()) == []


def trial_run(client, experiment: str, number: int, objective: float, tiny_model: Path) -> str:
    """A finished trial run of study `s` with a logged `model` (a small folder of files)."""
    run = client.create_run(experiment, tags={"optuna.study": "s", "optuna.trial": str(number)})
    run_id = run.info.run_id
    client.log_metric(run_id, "val/class_avg_accuracy", objective)
    model = client.create_logged_model(experiment, name="model", source_run_id=run_id)
    client.log_model_artifacts(model.model_id, str(tiny_model))
    client.set_terminated(run_id, "FINISHED")
    return run_id


def test_the_sweeps_clean_up_keeps_the_best_and_registered_models_and_points_to_the_best(
    tmp_path,
):
    """What the sweep does after each trial (src/tracking/study_models.py), on a real store:
    three finished trials and a running one, each with a model; one of them registered."""
    fresh_store(tmp_path / "mlruns" / "mlflow.db")
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment(
        "e", artifact_location=(tmp_path / "mlruns" / "artifacts" / "e").as_uri()
    )
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    (tiny / "MLmodel").write_text("x" * 1000)
    worse, best, registered = (
        trial_run(client, experiment, n, value, tiny) for n, value in ((0, 0.5), (1, 0.9), (2, 0.4))
    )
    running = trial_run(client, experiment, 3, 0.1, tiny)
    client.update_run(running, "RUNNING")  # still logging: never touched
    (kept,) = logged_models(client, client.get_run(registered))
    client.create_registered_model("r")
    client.create_model_version("r", kept.artifact_location, run_id=registered)
    parent = client.create_run(experiment).info.run_id

    keep_best_model(uri, parent, "s")

    with_models = [
        r for r in (worse, best, registered, running) if logged_models(client, client.get_run(r))
    ]
    assert with_models == [best, registered, running]
    assert len(model_folders(tmp_path)) == 3  # the deleted model's files and folder are gone
    (model,) = logged_models(client, client.get_run(best))
    tags = client.get_run(parent).data.tags
    assert (tags[BEST_RUN_TAG], tags[BEST_TRIAL_TAG]) == (best, "1")
    assert tags[BEST_MODEL_TAG] == f"models:/{model.model_id}"
    assert client.get_run(worse).data.tags["model.kept"].startswith("no: ")


def test_a_trial_logs_its_model_only_while_it_is_the_studys_best(tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    for value in (0.5, 0.7):
        trial = study.ask()
        study.tell(trial, value)
    study.ask()  # a third trial, running: the one that asks
    link = TrialLink("s", storage, 2, None)
    try:
        assert not link.is_best_so_far(0.6)
        assert link.is_best_so_far(0.7)  # a tie logs: whichever tied trial is kept has one
        assert link.is_best_so_far(0.8)
    finally:
        link.close()


# Four SVM trials over four tiny resolutions (a finite space: each point once)
SVM_SWEEP = [
    "sweep=svm",
    "model=choice(resnet18)",
    "resolution=choice(112)",
    "resolution.size=choice(32,40,48,56)",
    "hydra.sweeper.n_trials=4",
]


def model_folders(tmp: Path) -> list[Path]:
    """The logged models' folders on disk (a deleted model's is gone, files and folder)."""
    return list((tmp / "mlruns").glob("artifacts/*/models/*"))


@pytest.fixture(scope="module")  # a 4-trial sweep, 40-90 s on 2 cores: its tests are slow
def svm_sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    result = run_cli(*SVM_SWEEP, tmp=tmp, multirun=True)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp}/mlruns/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    (parent,) = [r for r in runs if "sweep.parent" in r.data.tags]
    trials = [r for r in runs if r.data.tags.get("optuna.study") == "svm"]
    assert len(trials) == 4
    return tmp, client, parent, trials


@pytest.mark.slow
def test_a_sweep_keeps_one_logged_model_its_best_trials_and_its_parent_points_to_it(svm_sweep):
    tmp, client, parent, trials = svm_sweep
    models = {r.info.run_id: logged_models(client, r) for r in trials}
    best = best_run_of_study(client, "svm")
    assert [run_id for run_id, logged in models.items() if logged] == [best.info.run_id]
    (model,) = models[best.info.run_id]
    assert len(model_folders(tmp)) == 1  # the others' files are gone, not only hidden
    tags = client.get_run(parent.info.run_id).data.tags
    assert tags[BEST_RUN_TAG] == best.info.run_id
    assert tags[BEST_TRIAL_TAG] == best.data.tags["optuna.trial"]
    assert tags[BEST_MODEL_TAG] == f"models:/{model.model_id}"
    for run in trials:
        if run.info.run_id != best.info.run_id:
            assert client.get_run(run.info.run_id).data.tags["model.kept"].startswith("no: ")


@pytest.mark.slow
def test_register_logs_a_trial_model_again_then_registers_it(svm_sweep):
    tmp, client, parent, trials = svm_sweep
    best = best_run_of_study(client, "svm")
    other = next(r for r in trials if r.info.run_id != best.info.run_id)
    result = run_module(
        "src.register",
        f"run_id={other.info.run_id}",
        "name=not-the-best",
        f"tracking_uri=sqlite:///{tmp}/mlruns/mlflow.db",
        # the trial's command names its data under tmp: the same folder as the sweep's
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "training it again" in result.stdout
    assert re.search(r"logged as models:/\S+: same settings and metrics as the run", result.stdout)
    assert f"registered run {other.info.run_id} as not-the-best version 1" in result.stdout
    (model,) = logged_models(client, other)
    version = client.get_model_version("not-the-best", "1")
    assert version.source == model.artifact_location and version.run_id == other.info.run_id
    assert len(model_folders(tmp)) == 2  # the best trial's and this one's
    # the sweep's next clean-up (the study resumed) deletes no registered model
    keep_best_model(f"sqlite:///{tmp}/mlruns/mlflow.db", parent.info.run_id, "svm")
    assert [m.model_id for m in logged_models(client, other)] == [model.model_id]
    assert len(model_folders(tmp)) == 2


# Two refining trials (the pruner's two start-up trials always finish), 3 epochs at 64 px
REFINE_SWEEP = [
    "sweep=refine_dnn",
    "resolution=choice(112)",
    "resolution.size=64",
    "model=choice(resnet18)",
    "classifier.epochs=choice(3)",
    "classifier.batch_size=choice(8)",
    "classifier.freeze_backbone=choice(false)",
    "dataset.synthetic.images_per_class=12",
    "hydra.sweeper.n_trials=2",
]


@pytest.mark.slow  # two refinement trials, then one trained again
def test_a_refined_trial_without_its_model_is_trained_again_exactly_and_registered(tmp_path):
    result = run_cli(*REFINE_SWEEP, tmp=tmp_path, multirun=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    client = MlflowClient(uri)
    best = best_run_of_study(client, "refine_dnn")
    runs = client.search_runs([best.info.experiment_id], "tags.`optuna.study` = 'refine_dnn'")
    (other,) = [r for r in runs if r.info.run_id != best.info.run_id]
    assert logged_models(client, other) == [] and len(model_folders(tmp_path)) == 1
    assert list((tmp_path / "data" / "checkpoints").iterdir()) == []
    registered = run_module(
        "src.register",
        f"run_id={other.info.run_id}",
        "name=refined",
        f"tracking_uri={uri}",
        timeout=600,
    )
    assert registered.returncode == 0, registered.stderr[-3000:]
    assert "same settings and metrics as the run" in registered.stdout
    assert f"registered run {other.info.run_id} as refined version 1" in registered.stdout
