"""Sweeps across machines, as the README's "Scaling out" recipe runs them: worker processes
sharing one Optuna study in PostgreSQL and one MLflow tracking server backed by PostgreSQL.
Each worker has folders of its own, as it would on its own machine."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import optuna
import pytest
import sqlalchemy
from mlflow.tracking import MlflowClient
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial
from PIL import Image

from tests.conftest import FAST, ROOT, run_sql, start_mlflow_server, stop_mlflow_server

pytestmark = pytest.mark.slow  # PostgreSQL workers and an MLflow server

# Tiny trials that train the head alone on a set of three colours: at lr 0.05 validation is
# perfect after one epoch, at lr 1e-6 at chance, and the median pruner stops those.
SWEEP = [
    "sweep=refine_dnn",
    "dataset=folder",
    "resolution=choice(112)",
    "model=choice(resnet18)",
    "classifier.epochs=choice(2)",
    "classifier.batch_size=choice(8)",
    "classifier.augment=false",
    "classifier.freeze_backbone=choice(true)",
    "classifier.lr=choice(0.05,0.000001)",
    "hydra.sweeper.sampler.name=random",
    "~hydra.sweeper.sampler.n_startup_trials",
    "hydra.sweeper.sampler.seed=3",
    "hydra.sweeper.pruner.n_startup_trials=1",
    "hydra.sweeper.pruner.n_warmup_steps=0",
    "hydra.sweeper.n_trials=4",
    "hydra.sweeper.heartbeat_interval=1",
    "hydra.sweeper.grace_period=3",  # s: a killed worker's trial is failed this soon
]


def write_colours(root):
    rng = np.random.default_rng(0)
    for name, rgb in {"red": (200, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 200)}.items():
        (root / name).mkdir(parents=True)
        for i in range(12):
            pixels = np.clip(np.array(rgb) + rng.normal(0, 25, (48, 48, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{name}_{i:02d}.jpg")
    return root


@pytest.fixture(scope="module")
def tracking_server(new_database, tmp_path_factory):
    """`mlflow server` with a PostgreSQL backend store and a folder for artifacts."""
    folder = tmp_path_factory.mktemp("tracking")
    server, uri = start_mlflow_server(folder, new_database("mlflow"))
    try:
        yield uri, folder / "artifacts"
    finally:
        stop_mlflow_server(server)


def worker(folder, colours, storage, tracking_uri, host=None, extra=()):
    """One sweep worker: `MLFLOW_TRACKING_URI=... python -m src.run -m ...`."""
    command = [
        sys.executable,
        "-m",
        "src.run",
        "-m",
        *FAST,
        *SWEEP,
        f"dataset.root={colours}",
        f"paths.data_dir={folder}/data",
        f"paths.sweeps_dir={folder}/sweeps",
        f"hydra.sweeper.storage={storage}",
        *extra,
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MLFLOW_TRACKING_URI": tracking_uri}
    if host:
        env["IMGSWEEP_WORKER_HOST"] = host  # as if it ran on another machine
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "worker.log").open("a") as log:
        return subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)


def running_trial_with_a_run(storage):
    try:
        study = optuna.load_study(study_name="refine_dnn", storage=storage)
    except KeyError:  # not created yet
        return None
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return next((t for t in running if "mlflow_run_id" in t.user_attrs), None)


@pytest.fixture(scope="module")
def sweep(new_database, tracking_server, tmp_path_factory):
    """A study that holds one good trial (an earlier worker's); worker C starts, and is
    killed with SIGKILL in the middle of its first trial; then workers A and B, started
    together, finish the study."""
    uri, artifacts = tracking_server
    storage = new_database("optuna")
    study = optuna.create_study(study_name="refine_dnn", storage=storage, direction="maximize")
    study.add_trial(
        create_trial(
            params={"classifier.lr": 0.05},
            distributions={"classifier.lr": CategoricalDistribution([0.05, 0.000001])},
            value=1.0,
            intermediate_values={0: 1.0, 1: 1.0},
        )
    )
    tmp = tmp_path_factory.mktemp("workers")
    colours = write_colours(tmp / "colours")
    killed = worker(tmp / "c", colours, storage, uri, host="elsewhere")
    deadline = time.time() + 180
    while (trial := running_trial_with_a_run(storage)) is None:
        assert killed.poll() is None and time.time() < deadline, (tmp / "c/worker.log").read_text()
        time.sleep(0.5)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    workers = [worker(tmp / name, colours, storage, uri) for name in ("a", "b")]
    codes = [w.wait(timeout=400) for w in workers]
    logs = {name: (tmp / name / "worker.log").read_text() for name in ("a", "b")}
    assert codes == [0, 0], logs
    study = optuna.load_study(study_name="refine_dnn", storage=storage)
    return study, trial.number, uri, artifacts, logs


def test_workers_finish_the_study_with_n_trials_and_no_repeats(sweep):
    study, _, _, _, _ = sweep
    counted = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(counted) == 4
    assert len({tuple(sorted(t.params.items())) for t in counted}) == 4  # none run twice
    ran = [t for t in counted if t.number > 0]  # the first is the earlier worker's
    assert len({t.user_attrs["worker"] for t in ran}) == 2  # both shared the work
    pruned = [t for t in ran if t.state == TrialState.PRUNED]
    assert pruned and all(t.params["classifier.lr"] == 0.000001 for t in pruned), [
        (t.state.name, t.params["classifier.lr"]) for t in ran
    ]
    assert all(len(t.intermediate_values) < 2 for t in pruned)  # stopped before the last epoch
    assert any(t.state == TrialState.COMPLETE for t in ran)


def test_a_killed_workers_trial_is_failed_by_heartbeat_and_retried(sweep):
    study, killed, _, _, logs = sweep
    trial = study.trials[killed]
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["worker"].startswith("elsewhere:")  # no local pid to look up
    assert "were left running by a worker that died: marked FAIL" in logs["a"] + logs["b"]
    assert [t.state for t in study.trials].count(TrialState.RUNNING) == 0


def test_one_parent_run_holds_every_workers_trials_on_the_server(sweep):
    study, killed, uri, artifacts, _ = sweep
    client = MlflowClient(uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "colours"]
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if "sweep.parent" in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    by_trial = {int(r.data.tags["optuna.trial"]): r for r in children}
    ran = [t for t in study.trials if t.number > 0]  # the first is the earlier worker's
    assert sorted(by_trial) == [t.number for t in ran]
    assert len(children) == len(ran)  # no stray runs
    for trial in ran:
        run = by_trial[trial.number]
        assert run.data.tags["optuna.state"] == trial.state.name
        assert run.info.status == ("KILLED" if trial.number == killed else "FINISHED")
    assert parent.info.status == "FINISHED" and "best_value" in parent.data.metrics
    complete = [by_trial[t.number] for t in ran if t.state == TrialState.COMPLETE]
    models = client.search_logged_models([experiment.experiment_id])
    # one model per study (issue 28): the best trial's, which the parent points to
    best = parent.data.tags["best_trial.run_id"]
    assert [m.source_run_id for m in models] == [best]
    assert best in {r.info.run_id for r in complete}
    assert any(artifacts.rglob("training_curve.png"))  # artifacts landed in the server's folder


def trial_states(storage) -> list[str]:
    """Straight from the database, on a connection of its own that is closed at once."""
    engine = sqlalchemy.create_engine(storage, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sqlalchemy.text("SELECT state FROM trials ORDER BY number"))
            return [state for (state,) in rows]
    except sqlalchemy.exc.SQLAlchemyError:
        return []
    finally:
        engine.dispose()


@pytest.mark.slow
def test_a_worker_whose_study_database_goes_away_stops_in_one_line(
    postgres, new_database, tracking_server, tmp_path
):
    uri, _ = tracking_server
    storage = new_database("outage")
    name = storage.rsplit("/", 1)[1]
    colours = write_colours(tmp_path / "colours")
    sweep = ["classifier.epochs=choice(12)"]  # long enough trials to cut one short
    process = worker(tmp_path / "a", colours, storage, uri, extra=sweep)
    deadline = time.time() + 240
    while trial_states(storage)[:2] != ["COMPLETE", "RUNNING"]:
        assert process.poll() is None and time.time() < deadline, process.returncode
        time.sleep(0.5)
    run_sql(postgres, f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")  # the database goes away
    run_sql(
        postgres, f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname='{name}'"
    )
    assert process.wait(timeout=120) == 1
    log = (tmp_path / "a" / "worker.log").read_text()
    line = log.strip().splitlines()[-1]
    assert line.startswith(f"error: the study's storage {storage} stopped answering"), log[-3000:]
    assert "run the same command again once it is back" in line and "Traceback" not in log

    run_sql(postgres, f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")  # back
    assert trial_states(storage)[:2] == ["COMPLETE", "RUNNING"]  # nothing lost, nothing made up
    again = worker(tmp_path / "a", colours, storage, uri, extra=sweep)
    assert again.wait(timeout=400) == 0, (tmp_path / "a" / "worker.log").read_text()[-3000:]
    states = trial_states(storage)
    assert states[1] == "FAIL"  # the interrupted one, failed (its worker is gone) and retried
    assert states.count("COMPLETE") + states.count("PRUNED") == 4
