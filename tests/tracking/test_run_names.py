"""Every run has a distinct name that says what it is: a repeat is numbered, a sweep's trial
names its study, its number and the values it drew, a grid's job the values it was given."""

import pytest
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient

from src.run_spec import describe_run
from src.tracking.run_names import unique_name
from tests.conftest import ROOT, fresh_store, run_cli


def names_in(tmp) -> list[str]:
    client = MlflowClient(f"sqlite:///{tmp}/mlruns/mlflow.db")
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, order_by=["attributes.start_time ASC"])
    return [r.info.run_name for r in runs if "sweep.parent" not in r.data.tags]


def test_a_repeated_name_gets_the_next_number_in_its_experiment_only(tmp_path):
    fresh_store(tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    first, other = client.create_experiment("first"), client.create_experiment("other")
    taken = []
    for _ in range(3):
        taken.append(unique_name(uri, first, "svm-resnet18-224px"))
        client.create_run(first, run_name=taken[-1])
    assert taken == ["svm-resnet18-224px", "svm-resnet18-224px-2", "svm-resnet18-224px-3"]
    assert unique_name(uri, other, "svm-resnet18-224px") == "svm-resnet18-224px"
    # a longer name that starts the same is another name; a user's name with a quote works
    assert unique_name(uri, first, "svm-resnet18-224") == "svm-resnet18-224"
    client.create_run(first, run_name="Ann's run")
    assert unique_name(uri, first, "Ann's run") == "Ann's run-2"


def trial_job(*overrides: str):
    """The config of a trial's job, as the sweeper composes it (src/tuning/sweep_loop.py)."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def test_a_trial_is_named_by_its_study_number_and_drawn_values():
    link = ["trial.study=refine_dnn", "trial.number=7", "trial.parent_run_id=x"]
    drawn = [
        "classifier.lr=0.0030487362",
        "classifier.weight_decay=1.234e-05",
        "classifier.freeze_backbone=false",
        "model=resnet34",
        "trial.swept=['classifier.lr','classifier.weight_decay','classifier.freeze_backbone','model']",
    ]
    spec = describe_run(trial_job("classifier=dnn", "resolution='112'", *drawn, *link))
    assert spec.tracking.run_name == (
        "refine_dnn#7 dnn-resnet34-112px lr=0.003 weight_decay=1.2e-05 freeze_backbone=false"
    )
    given = describe_run(
        trial_job("classifier=dnn", "tracking.run_name=mine", *drawn[:1], drawn[-1], *link)
    )
    assert given.tracking.run_name.startswith("refine_dnn#7 mine lr=0.003 ")


@pytest.mark.slow  # a two-trial sweep, ~45 s on 2 busy cores
def test_a_sweeps_trials_have_distinct_names_with_study_number_and_values(tmp_path):
    sweep = ["sweep=svm", "model=choice(resnet18)", "resolution=choice(112)"]
    drawn = "dataset.split.val_ratio=choice(0.2,0.25)"
    result = run_cli(*sweep, drawn, "hydra.sweeper.n_trials=2", tmp=tmp_path, multirun=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(names_in(tmp_path)) == [
        "svm#0 svm-resnet18-32px val_ratio=0.25",
        "svm#1 svm-resnet18-32px val_ratio=0.2",
    ]


@pytest.mark.slow  # a grid of two runs
def test_a_grid_job_is_named_by_the_values_its_command_line_sweeps(tmp_path):
    result = run_cli("seed=0,1", "classifier.l2_normalize=false", tmp=tmp_path, multirun=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert names_in(tmp_path) == [
        "grid#0 svm-resnet18-32px seed=0",
        "grid#1 svm-resnet18-32px seed=1",
    ]
