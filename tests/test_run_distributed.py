"""Refinement on several processes: `torchrun --nproc_per_node=2 -m src.run classifier=dnn`,
here on the CPU (gloo), compared with one process taking the same global batches."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from mlflow.utils.file_utils import local_file_uri_to_path

from src.tracking.study_models import logged_models
from tests.conftest import FAST, ROOT, default_ctrl_c, fresh_store, run_cli

# Batch norm is frozen (freeze_backbone=true: the head trains, the backbone's statistics
# stay): torch's SyncBatchNorm has no CPU implementation, and statistics over each
# process's half batch would differ from one process's. No dropout, no augmentation, and
# 16 images an epoch (two global batches of 8), so both runs see exactly the same batches.
REFINE = [
    "classifier=dnn",
    "resolution.size=64",
    "classifier.batch_size=8",
    "classifier.max_train_images=16",
    "classifier.lr=0.01",
    "classifier.schedule=step",
    "classifier.patience=0",
    "classifier.augment=false",
    "classifier.dropout=0",
    "classifier.freeze_backbone=true",
    "dataset.synthetic.images_per_class=12",
    "device=cpu",
    "precision=fp32",  # bf16 rounds each process's half batch differently: exact parity needs fp32
]


def torchrun(*overrides, tmp, processes=2, background=False):
    fresh_store(tmp / "mlruns" / "mlflow.db")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # one machine, a free port of its own
        f"--nproc_per_node={processes}",
        "-m",
        "src.run",
        *FAST,
        "dataset.synthetic.image_size=64",
        f"paths.data_dir={tmp}/data",
        f"paths.sweeps_dir={tmp}/sweeps",
        f"tracking.uri=sqlite:///{tmp}/mlruns/mlflow.db",
        *overrides,
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    if background:  # Ctrl-C as in a terminal
        return subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            preexec_fn=default_ctrl_c,
        )
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)


def logged_weights(client, run) -> dict:
    """The weights of the run's logged model (a FINISHED run keeps no checkpoint)."""
    (model,) = logged_models(client, run)
    network = Path(local_file_uri_to_path(model.artifact_location)) / "artifacts" / "network.pt"
    return torch.load(network, weights_only=False)["state_dict"]


def runs_of(tmp):
    client = MlflowClient(f"sqlite:///{tmp}/mlruns/mlflow.db")
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client, client.search_runs(experiments, order_by=["attributes.start_time ASC"])


def losses(client, run) -> list[float]:
    history = client.get_metric_history(run.info.run_id, "train/loss")
    return [m.value for m in sorted(history, key=lambda m: m.step)]


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """One process, 3 epochs: what two processes must reproduce."""
    tmp = tmp_path_factory.mktemp("single")
    result = run_cli(*REFINE, "classifier.epochs=3", tmp=tmp)
    assert result.returncode == 0, result.stderr[-3000:]
    client, (run,) = runs_of(tmp)
    return client, run


def assert_same_training(ddp_client, ddp, single):
    single_client, single_run = single
    expected = losses(single_client, single_run)
    assert expected[-1] < expected[0]  # it trains
    assert losses(ddp_client, ddp) == pytest.approx(expected, rel=1e-4)
    a, b = logged_weights(ddp_client, ddp), logged_weights(single_client, single_run)
    assert a.keys() == b.keys()  # the plain module's names: no "module." of the DDP wrapper
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-5), key


def assert_tracked_by_rank_0_alone(client, runs_in_store, *results):
    (run,) = runs_in_store  # one run, though two processes trained
    assert run.info.status == "FINISHED" and run.data.tags["distributed.processes"] == "2"
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "lr")) == [0, 1, 2]
    assert "test/class_avg_accuracy" in run.data.metrics
    assert client.search_logged_models([run.info.experiment_id])
    for result in results:  # one voice: rank 0's epoch lines only
        assert (result.stdout + result.stderr).count("epoch 0: train loss") <= 1


# two torchrun processes and a one-process run; README's torchrun acceptance test runs by default
@pytest.mark.slow
def test_two_processes_train_as_one_with_the_same_global_batch_and_rank_0_tracks(single, tmp_path):
    result = torchrun(*REFINE, "classifier.epochs=3", tmp=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    client, runs_in_store = runs_of(tmp_path)
    assert_tracked_by_rank_0_alone(client, runs_in_store, result)
    assert_same_training(client, runs_in_store[0], single)


@pytest.mark.slow
def test_two_processes_resume_a_run_as_if_it_had_not_stopped(single, tmp_path):
    # Ctrl-C once the first checkpoint is written (a FINISHED run keeps none to resume)
    first = torchrun(*REFINE, "classifier.epochs=40", tmp=tmp_path, background=True)
    try:
        deadline = time.time() + 300
        while not list((tmp_path / "data" / "checkpoints").glob("*/last.pt")):
            assert first.poll() is None and time.time() < deadline
            time.sleep(0.3)
        first.send_signal(signal.SIGINT)
        first.wait(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    _, (run,) = runs_of(tmp_path)
    resumed = torchrun(*REFINE, "classifier.epochs=3", f"resume={run.info.run_id}", tmp=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert re.search(r"after epoch [01]\b", resumed.stdout + resumed.stderr)
    client, runs_in_store = runs_of(tmp_path)
    assert_tracked_by_rank_0_alone(client, runs_in_store, resumed)
    assert_same_training(client, runs_in_store[0], single)


def test_a_sweep_refuses_to_run_under_torchrun(tmp_path):
    result = run_cli("sweep=svm", tmp=tmp_path, multirun=True, env={"WORLD_SIZE": "2"})
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "error: a sweep does not run under torchrun: start one sweep process per machine"
        )
    )


@pytest.mark.slow
def test_the_whole_network_trains_on_two_processes_with_their_own_batch_statistics(tmp_path):
    whole = [o for o in REFINE if not o.startswith("classifier.freeze_backbone")]
    result = torchrun(
        *whole, "classifier.epochs=6", "classifier.balance_classes=true", tmp=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    client, (run,) = runs_of(tmp_path)
    loss = losses(client, run)
    assert len(loss) == 6 and min(loss[-2:]) < loss[0]
    state = logged_weights(client, run)
    means = [v for k, v in state.items() if k.startswith("featurizer.") and "running_mean" in k]
    assert means and all(m.abs().sum() > 0 for m in means)  # batch norm trained (init: 0)
