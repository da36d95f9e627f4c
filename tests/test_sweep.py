"""End to end: `python -m src.run -m sweep=...`, checked through Optuna's storage and MLflow."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from tests.conftest import (
    FAST,
    ROOT,
    TINY_SYNTHETIC,
    default_ctrl_c,
    fresh_store,
    run_cli,
    write_colour_dataset,
)

# A grid over five tiny resolutions: every trial is a different, quick SVM run.
SVM_SWEEP = [
    "sweep=svm",
    "model=choice(resnet18)",
    "resolution=choice(112)",
    "resolution.size=choice(32,40,48,56,64)",
]
REFINE_SWEEP = [
    "sweep=refine_dnn",
    "resolution=choice(112)",
    "resolution.size=64",
    "model=choice(resnet18)",
    "classifier.epochs=choice(3)",
    "classifier.batch_size=choice(8)",
    "classifier.augment=false",
    "classifier.freeze_backbone=choice(false)",
    "dataset.synthetic.images_per_class=12",
    "hydra.sweeper.sampler.n_startup_trials=2",
]


def study_of(tmp, name):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp}/sweeps/optuna.db")


def states(study) -> list[str]:
    return [t.state.name for t in study.trials]


def mlflow_tree(tmp):
    """(parents, children by parent id) of every experiment in the store under tmp."""
    client = MlflowClient(f"sqlite:///{tmp}/mlruns/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parents = [r for r in runs if "sweep.parent" in r.data.tags]
    children = {}
    for run in runs:
        if parent := run.data.tags.get("mlflow.parentRunId"):
            children.setdefault(parent, []).append(run)
    return client, parents, children


@pytest.fixture(scope="module")
def svm_sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    first = run_cli(*SVM_SWEEP, "hydra.sweeper.n_trials=4", tmp=tmp, multirun=True)
    assert first.returncode == 0, first.stderr[-3000:]
    return tmp, first


@pytest.mark.slow  # a 3-trial sweep; README's sweep acceptance test runs one by default
def test_sweep_runs_n_trials_under_one_parent_run(svm_sweep):
    tmp, result = svm_sweep
    assert states(study_of(tmp, "svm")) == ["COMPLETE"] * 4
    client, parents, children = mlflow_tree(tmp)
    (parent,) = parents
    assert parent.info.run_name == "svm" and parent.info.status == "FINISHED"
    kids = children[parent.info.run_id]
    assert len(kids) == 4 and {k.data.tags["optuna.state"] for k in kids} == {"COMPLETE"}
    assert parent.info.end_time >= max(k.info.end_time for k in kids)  # its Duration
    assert sorted(int(k.data.tags["optuna.trial"]) for k in kids) == [0, 1, 2, 3]
    assert {k.data.params["resolution.size"] for k in kids} == {
        str(t.params["resolution.size"]) for t in study_of(tmp, "svm").trials
    }
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "optuna")}
    assert {
        "optuna/best_trial.json",
        "optuna/optimization_history.png",
        "optuna/leaderboard.json",
        "optuna/leaderboard.png",
        "optuna/best_vs_elapsed.png",
    } <= artifacts
    assert "best_value" in parent.data.metrics
    (command,) = [line for line in result.stdout.splitlines() if line.startswith("reproduce it:")]
    assert command.startswith("reproduce it: python -m src.run ") and " sweep=svm " in command
    assert " resolution=112 " in command  # as a user would type it
    assert f"runs table: http://127.0.0.1:5000/#/experiments/{parent.info.experiment_id}/runs?" in (
        result.stdout
    )


@pytest.mark.slow  # two more sweep starts
def test_same_command_again_runs_nothing_and_a_larger_total_runs_the_difference(svm_sweep):
    tmp, _ = svm_sweep
    again = run_cli(*SVM_SWEEP, "hydra.sweeper.n_trials=4", tmp=tmp, multirun=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "4 of 4 trials done" in again.stdout and "trial 4" not in again.stdout
    more = run_cli(*SVM_SWEEP, "hydra.sweeper.n_trials=5", tmp=tmp, multirun=True)
    assert more.returncode == 0, more.stderr[-3000:]
    assert states(study_of(tmp, "svm")) == ["COMPLETE"] * 5
    _, parents, children = mlflow_tree(tmp)
    assert len(parents) == 1 and len(children[parents[0].info.run_id]) == 5
    (parent,) = parents  # the continued study's parent ended again, after its new trial
    assert parent.info.status == "FINISHED"
    assert parent.info.end_time >= max(k.info.end_time for k in children[parent.info.run_id])


@pytest.mark.slow  # a sweep of refining trials
def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path):
    """A point that fails inside its run (2 images a class cannot be split: that is found
    once the images are read, unlike a value the command line's check refuses): the trial
    is FAIL with its error, its run FAILED, and the sweep goes on to the other point."""
    result = run_cli(
        "sweep=svm",
        "model=choice(resnet18)",
        "resolution=choice(112)",
        "resolution.size=choice(32)",
        "dataset.max_images_per_class=choice(7,8,2)",  # 2 is drawn (sampler seed 0)
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.max_failure_rate=0.5",
        tmp=tmp_path,
        multirun=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    study = study_of(tmp_path, "svm")
    assert sorted(states(study)) == ["COMPLETE", "COMPLETE", "FAIL"]
    (failed,) = [t for t in study.trials if t.state == TrialState.FAIL]
    assert failed.params["dataset.max_images_per_class"] == 2 and failed.user_attrs["error"]
    _, parents, children = mlflow_tree(tmp_path)
    kids = children[parents[0].info.run_id]
    assert sorted(k.info.status for k in kids) == ["FAILED", "FINISHED", "FINISHED"]


@pytest.mark.slow  # a sweep start
def test_too_many_failures_stop_the_sweep_with_one_line(tmp_path):
    result = run_cli(
        "sweep=svm",
        "model=choice(resnet18)",
        "resolution=choice(112)",
        "resolution.size=choice(32)",
        "dataset.max_images_per_class=choice(1,2)",  # too few to split: fails in its run
        "hydra.sweeper.n_trials=2",
        tmp=tmp_path,
        multirun=True,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: 1 trials failed, more than")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("classifier.lrr=interval(0.1, 1)", "classifier has no key 'lrr'"),
        ("classifier.lr=interval(0.5, 0.1)", "empty interval"),
        ("hydra.sweeper.storage=postgresql://nobody@127.0.0.1:9/none", "cannot be opened"),
        ("hydra.sweeper.budget=30", "hydra.sweeper.budget=30: expected a positive time"),
        ("hydra.sweeper.n_trials=null", "n_trials=null needs a hydra.sweeper.budget"),
    ],
    ids=["unknown-key", "empty-interval", "bad-storage", "budget-unit", "no-count-no-budget"],
)
def test_bad_sweep_settings_fail_before_any_trial(tmp_path, override, message):
    result = run_cli("sweep=refine_dnn", override, tmp=tmp_path, multirun=True, timeout=120)
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr
    assert "trial 0" not in result.stdout


@pytest.mark.slow  # 4 refining trials
def test_pruning_stops_weak_trials_early_and_tags_their_runs(tmp_path):
    # colours: learnable in a few epochs even from random weights, so lr=0.01 climbs while
    # lr=1e-6 stays put (on the synthetic textures every trial sat at chance: ties, no pruning)
    colours = write_colour_dataset(tmp_path / "colours", 12)
    result = run_cli(
        *(o for o in REFINE_SWEEP if not o.startswith("dataset.synthetic.")),
        "dataset=folder",
        f"dataset.root={colours}",
        "classifier.lr=choice(0.01,0.000001)",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.pruner.n_startup_trials=1",
        "hydra.sweeper.pruner.n_warmup_steps=0",
        "hydra.sweeper.sampler.seed=3",
        tmp=tmp_path,
        multirun=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    study = study_of(tmp_path, "refine_dnn")
    weak = [t for t in study.trials if t.params["classifier.lr"] < 0.001]
    assert weak and all(t.state == TrialState.PRUNED for t in weak), states(study)
    client, parents, children = mlflow_tree(tmp_path)
    runs = {int(k.data.tags["optuna.trial"]): k for k in children[parents[0].info.run_id]}
    for trial in (t for t in study.trials if t.state == TrialState.PRUNED):
        run = runs[trial.number]
        assert (
            run.data.tags["optuna.state"] == "PRUNED" and run.data.tags["optuna.pruned"] == "true"
        )
        assert "test/accuracy" not in run.data.metrics  # no test evaluation for a pruned trial
        assert run.data.metrics["time/run_seconds"] > 0  # what it cost, pruned or not
        epochs = client.get_metric_history(run.info.run_id, "val/class_avg_accuracy")
        assert len(epochs) == len(trial.intermediate_values)  # stopped where it was pruned
        if trial in weak:
            assert len(epochs) < 3  # a weak trial stops before the maximum


def states_read_only(database) -> list[str]:
    """Trial states straight from the SQLite file, without touching (or creating) it the
    way opening an Optuna storage would while the sweep is still setting it up."""
    try:
        with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
            rows = connection.execute("SELECT state FROM trials ORDER BY number").fetchall()
    except sqlite3.Error:
        return []
    return [state for (state,) in rows]


def sweep_process(tmp, *overrides, stdout=subprocess.DEVNULL):
    fresh_store(tmp / "mlruns" / "mlflow.db")
    command = [
        sys.executable,
        "-m",
        "src.run",
        "-m",
        *FAST,
        *TINY_SYNTHETIC,
        f"paths.data_dir={tmp}/data",
        f"paths.sweeps_dir={tmp}/sweeps",
        f"tracking.uri=sqlite:///{tmp}/mlruns/mlflow.db",
        *overrides,
    ]
    return subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=stdout,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=default_ctrl_c,
    )


@pytest.mark.slow  # two sweeps of refining trials
def test_an_interrupted_sweep_continues_where_it_stopped(tmp_path):
    sweep = [
        *REFINE_SWEEP,
        "classifier.lr=tag(log, interval(0.001, 0.01))",
        "hydra.sweeper.pruner.name=none",
        "~hydra.sweeper.pruner.n_startup_trials",
        "~hydra.sweeper.pruner.n_warmup_steps",
        "hydra.sweeper.n_trials=3",
    ]
    process = sweep_process(tmp_path, *sweep)
    storage = tmp_path / "sweeps" / "optuna.db"
    deadline = time.time() + 240
    while time.time() < deadline:  # wait for the first trial to finish, the second to start
        now = states_read_only(storage)
        if now[:1] == ["COMPLETE"] and "RUNNING" in now:
            break
        time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert states(study_of(tmp_path, "refine_dnn")) == ["COMPLETE", "RUNNING"]
    again = run_cli(*sweep, tmp=tmp_path, multirun=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "were left running by a worker that died: marked FAIL" in again.stdout
    assert states(study_of(tmp_path, "refine_dnn")) == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]


@pytest.mark.slow  # two concurrent sweeps
def test_two_sweeps_on_one_storage_share_the_study_without_repeats(tmp_path):
    sweep = [
        "sweep=svm",
        "model=choice(resnet18)",
        "resolution=choice(112)",
        "resolution.size=choice(32,36,40,44,48,52,56,60)",
        "hydra.sweeper.sampler.name=random",
        "hydra.sweeper.n_trials=4",
    ]
    fresh_store(tmp_path / "mlruns" / "mlflow.db")
    (tmp_path / "sweeps").mkdir()
    logs = [(tmp_path / f"worker{i}.log").open("w") for i in range(2)]
    workers = [sweep_process(tmp_path, *sweep, stdout=log) for log in logs]
    codes = [w.wait(timeout=300) for w in workers]
    for log in logs:
        log.close()
    assert codes == [0, 0], [(tmp_path / f"worker{i}.log").read_text()[-2000:] for i in range(2)]
    study = study_of(tmp_path, "svm")
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 4
    assert len({t.params["resolution.size"] for t in complete}) == 4  # no point run twice
    # every trial was run by one of the two sweep processes (WORKER is host:pid)
    pids = {int(t.user_attrs["worker"].rsplit(":", 1)[1]) for t in complete}
    assert pids <= {w.pid for w in workers}, (pids, [w.pid for w in workers])
    _, parents, children = mlflow_tree(tmp_path)
    assert len(parents) == 1
    assert len([k for k in children[parents[0].info.run_id] if k.info.status == "FINISHED"]) == 4


@pytest.mark.slow  # joblib worker processes
def test_parallel_trials_run_through_the_joblib_launcher(tmp_path):
    result = run_cli(
        *SVM_SWEEP,
        "hydra/launcher=joblib",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.n_trials=3",
        tmp=tmp_path,
        multirun=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert states(study_of(tmp_path, "svm")) == ["COMPLETE"] * 3
    _, parents, children = mlflow_tree(tmp_path)
    assert len(children[parents[0].info.run_id]) == 3


@pytest.mark.slow  # a grid of runs; README's grid acceptance test runs one by default
def test_a_plain_hydra_grid_is_grouped_under_one_parent_run(tmp_path):
    result = run_cli("resolution.size=32,40", tmp=tmp_path, multirun=True)
    assert result.returncode == 0, result.stderr[-3000:]
    _, parents, children = mlflow_tree(tmp_path)
    (parent,) = parents
    assert parent.data.tags["sweep.kind"] == "grid" and parent.info.status == "FINISHED"
    kids = children[parent.info.run_id]
    assert parent.info.end_time >= max(k.info.end_time for k in kids)
    assert sorted(k.data.params["resolution.size"] for k in kids) == ["32", "40"]


@pytest.mark.slow  # two grid jobs, 49 s on 2 busy cores (tests/tracking/test_parent_ends.py: fast)
def test_a_grid_whose_jobs_fail_early_ends_its_parent_failed(tmp_path):
    """Both jobs fail before their runs start (vit_b_16 needs multiples of 16 px): the
    parent was left RUNNING."""
    result = run_cli("model=vit_b_16", "resolution.size=40,50", tmp=tmp_path, multirun=True)
    assert result.returncode == 1
    _, parents, children = mlflow_tree(tmp_path)
    (parent,) = parents
    assert parent.data.tags["sweep.kind"] == "grid" and parent.info.status == "FAILED"
    assert parent.info.end_time is not None and not children


@pytest.mark.slow  # two SVM trials
def test_a_sweep_stops_once_every_point_of_its_finite_space_ran(tmp_path):
    """A grid sampler over a range(...) (it failed every trial: `The parameter name, ...,
    is not found in the given grid`), with more trials asked for than the space has."""
    result = run_cli(
        "sweep=svm",
        "model=choice(resnet18)",
        "resolution=choice(112)",
        "resolution.size=range(32,48,8)",
        "hydra.sweeper.n_trials=4",
        tmp=tmp_path,
        multirun=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        "sweep: all 2 points of the search space have been tried; stopping at 2 of 4 trials"
        in result.stdout
    )
    study = study_of(tmp_path, "svm")
    assert states(study) == ["COMPLETE"] * 2
    assert sorted(t.params["resolution.size"] for t in study.trials) == [32, 40]
    _, parents, _ = mlflow_tree(tmp_path)
    (parent,) = parents
    assert parent.info.status == "FINISHED" and "study svm: 2 complete" in result.stdout


@pytest.mark.slow  # a sweep of refining trials
def test_ctrl_c_fails_the_running_trial_and_leaves_no_run_running(tmp_path):
    sweep = [
        *REFINE_SWEEP,
        "classifier.lr=tag(log, interval(0.001, 0.01))",
        "classifier.epochs=choice(300)",
        "classifier.patience=0",  # no early stop: the trial is still running at Ctrl-C
        "hydra.sweeper.pruner.name=none",
        "~hydra.sweeper.pruner.n_startup_trials",
        "~hydra.sweeper.pruner.n_warmup_steps",
        "hydra.sweeper.n_trials=2",
    ]
    process = sweep_process(tmp_path, *sweep)
    try:
        storage = tmp_path / "sweeps" / "optuna.db"
        deadline = time.time() + 240
        while time.time() < deadline and states_read_only(storage) != ["RUNNING"]:
            time.sleep(0.5)
        while time.time() < deadline and not list(
            (tmp_path / "data" / "checkpoints").glob("*/*.pt")
        ):
            time.sleep(0.5)  # until the trial's run has trained an epoch: well under way
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=120) != 0
    finally:  # a 300-epoch sweep must not outlive a failed test
        if process.poll() is None:
            process.kill()
            process.wait()
    study = study_of(tmp_path, "refine_dnn")
    assert states(study) == ["FAIL"] and "interrupted" in study.trials[0].user_attrs["error"]
    client, parents, children = mlflow_tree(tmp_path)
    (parent,) = parents
    assert parent.info.status == "KILLED"
    assert [k.info.status for k in children[parent.info.run_id]] == ["KILLED"]
