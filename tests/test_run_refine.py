"""End to end: refinement runs (`classifier=dnn`, `svm_dnn_refined`), epoch by epoch, resumable."""

import base64
import json
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
from tests.conftest import (
    EPOCH_METRICS,
    FAST,
    ROOT,
    TINY_SYNTHETIC,
    default_ctrl_c,
    fresh_store,
    image_bytes,
    run_cli,
)

# refinement end to end; README's dnn, svm_dnn_refined and resume acceptance tests run by default
pytestmark = pytest.mark.slow

# 64 px: at 32 px a ResNet's last feature map is 1x1 and batch-norm training is erratic.
# The step schedule keeps the learning rate independent of the number of epochs, so a run
# resumed with more epochs can be compared to a straight one.
REFINE = [
    "classifier=dnn",
    "resolution.size=64",
    "classifier.lr=0.01",
    "classifier.schedule=step",
    "classifier.patience=0",
    "classifier.augment=false",
]


def runs_of(tmp):
    client = MlflowClient(f"sqlite:///{tmp}/mlruns/mlflow.db")
    return client, client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        order_by=["attributes.start_time ASC"],
    )


def steps(client, run_id, metric) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, metric))


def final_weights(client, run) -> dict:
    """The logged model's weights (a FINISHED run keeps no checkpoint)."""
    (model,) = logged_models(client, run)
    network = Path(local_file_uri_to_path(model.artifact_location)) / "artifacts" / "network.pt"
    return torch.load(network, weights_only=False)["state_dict"]


def start_cli(*overrides: str, tmp) -> subprocess.Popen:
    """`run_cli`'s command, started in the background, Ctrl-C as in a terminal; what it
    prints goes to `tmp`/output.log."""
    fresh_store(tmp / "mlruns" / "mlflow.db")
    output = (tmp / "output.log").open("w")
    environment = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "src.run",
            *FAST,
            *TINY_SYNTHETIC,
            f"paths.data_dir={tmp}/data",
            f"tracking.uri=sqlite:///{tmp}/mlruns/mlflow.db",
            *overrides,
        ],
        cwd=ROOT,
        stdout=output,
        stderr=subprocess.STDOUT,
        env=environment,
        preexec_fn=default_ctrl_c,
    )


def interrupted_run(tmp) -> str:
    """A long run stopped by Ctrl-C once its first checkpoint is written (a FINISHED run
    keeps none to resume); its run id."""
    started = start_cli(*REFINE, "classifier.epochs=40", tmp=tmp)
    try:
        deadline, log = time.time() + 300, tmp / "output.log"
        # the first epoch kept and said: Ctrl-C then lands in the next epoch's training
        while "epoch 0:" not in log.read_text() or not list(
            (tmp / "data" / "checkpoints").glob("*/last.pt")
        ):
            assert started.poll() is None and time.time() < deadline, log.read_text()[-3000:]
            time.sleep(0.3)
        started.send_signal(signal.SIGINT)
        assert started.wait(timeout=120) == 130, log.read_text()[-3000:]
    finally:
        if started.poll() is None:
            started.kill()
    _, (run,) = runs_of(tmp)
    assert run.info.status == "KILLED"
    return run.info.run_id


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """A run interrupted after its first epoch or two, resumed to four epochs; and a
    straight four-epoch run. (The step schedule's rate does not depend on the epochs.)"""
    tmp = tmp_path_factory.mktemp("resume")
    run_id = interrupted_run(tmp)
    again = run_cli(*REFINE, "classifier.epochs=4", f"resume={run_id}", tmp=tmp)
    assert again.returncode == 0, again.stderr[-3000:]
    straight_tmp = tmp_path_factory.mktemp("straight")
    straight = run_cli(*REFINE, "classifier.epochs=4", tmp=straight_tmp)
    assert straight.returncode == 0, straight.stderr[-3000:]
    return tmp, run_id, straight_tmp, again


def test_every_epoch_is_logged_once_with_its_step(resumed):
    tmp, run_id, _, _ = resumed
    client, runs = runs_of(tmp)
    assert [r.info.run_id for r in runs] == [run_id]  # the resume continued the same run
    for metric in EPOCH_METRICS:
        assert steps(client, run_id, metric) == [0, 1, 2, 3], metric
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert (
        run.data.metrics["refine/epochs_run"] == 4 and "test/class_avg_accuracy" in run.data.metrics
    )
    assert run.data.tags["resumed.classifier.epochs"] == "4"
    artifacts = {a.path for a in client.list_artifacts(run_id, "evaluation")}
    assert {"evaluation/training_curve.png", "evaluation/roc_test.png"} <= artifacts


def test_resumed_training_ends_where_a_straight_run_ends(resumed):
    tmp, run_id, straight_tmp, again = resumed
    assert "resuming run" in again.stdout and re.search(r"after epoch [0-2]\b", again.stdout)
    client, (resumed_run,) = runs_of(tmp)
    straight_client, (straight_run,) = runs_of(straight_tmp)
    a, b = final_weights(client, resumed_run), final_weights(straight_client, straight_run)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-5), key


def test_the_served_network_is_retrained_on_train_and_validation(resumed):
    """At the default `classifier.refit=true` the served network is trained again on train +
    validation for the epochs validation kept, and the run says so."""
    _, _, straight_tmp, _ = resumed
    client, (run,) = runs_of(straight_tmp)
    kept = int(run.data.metrics["refine/best_epoch"])
    assert run.data.metrics["refit/epochs"] == kept + 1
    assert steps(client, run.info.run_id, "refit/loss") == list(range(kept + 1))
    images = int(run.data.params["data.train_images"]) + int(run.data.params["data.val_images"])
    assert f"retrained on train + validation ({images} images)" in run.data.tags["final_model"]


def test_refined_model_predicts_softmax_scores_in_a_fresh_process(resumed, tmp_path):
    tmp, run_id, _, _ = resumed
    image = base64.b64encode(image_bytes(size=(90, 70))).decode()
    script = f"""
import json, mlflow, pandas as pd
mlflow.set_tracking_uri("sqlite:///{tmp}/mlruns/mlflow.db")
model = mlflow.pyfunc.load_model("runs:/{run_id}/model")
out = model.predict(pd.DataFrame({{"image": ["{image}"]}}))
print(json.dumps(out.to_dict("records")))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (row,) = json.loads(result.stdout.strip().splitlines()[-1])
    assert row["label"] in ("dotted", "leopard", "striped")
    assert sum(row[c] for c in ("dotted", "leopard", "striped")) == pytest.approx(1, abs=1e-5)


def test_resume_of_an_unknown_run_is_refused(resumed):
    tmp, _, _, _ = resumed
    result = run_cli(*REFINE, "resume=0123456789abcdef", tmp=tmp)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: resume=0123456789abcdef: no such run in the tracking store "
        f"sqlite:///{tmp}/mlruns/mlflow.db"
    )


def test_resume_with_another_model_is_refused_and_leaves_the_run_as_it_was(resumed):
    tmp, run_id, _, _ = resumed
    result = run_cli(*REFINE, "model=resnet34", f"resume={run_id}", tmp=tmp)
    assert result.returncode == 1
    assert "the run differs: model.name: the run has 'resnet18', this command 'resnet34'" in (
        result.stderr
    )
    client, (run,) = runs_of(tmp)
    assert run.info.status == "FINISHED"


def test_svm_on_the_refined_network_end_to_end(tmp_path):
    result = run_cli("classifier=svm_dnn_refined", *REFINE[1:], "classifier.epochs=1", tmp=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    client, (run,) = runs_of(tmp_path)
    assert run.info.status == "FINISHED" and run.data.tags["classifier"] == "svm_dnn_refined"
    assert steps(client, run.info.run_id, "val/class_avg_accuracy") == [0]
    assert len(steps(client, run.info.run_id, "val/svm_C_class_avg_accuracy")) == 7
    assert "classifier.chosen_C" in run.data.params and "SVM C =" in result.stdout


def test_a_learning_rate_that_diverges_fails_the_run_with_one_line(tmp_path):
    result = run_cli(*REFINE, "classifier.lr=1e12", "classifier.epochs=2", tmp=tmp_path)
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]  # after the progress bars
    assert line.startswith("error: the training loss became") and "lower classifier.lr" in line
    assert "Traceback" not in result.stderr
    _, (run,) = runs_of(tmp_path)
    assert run.info.status == "FAILED"
