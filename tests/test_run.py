"""End to end: `python -m src.run` in a subprocess, checked through MLflow as a user would."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from src.precision import cpu_flags, native_bf16
from tests.conftest import image_bytes, run_cli, write_colour_dataset, write_dataset
from tests.test_quiet_output import chatter

ARTIFACTS = {
    "config.yaml",
    "data/split.csv",
    "data/skipped_files.tsv",
    "evaluation/roc_test.png",
    "evaluation/confusion_test.png",
    "evaluation/reliability.png",
    "classifier/svm_C_selection.png",
}


def only_run(tmp):
    client = MlflowClient(f"sqlite:///{tmp}/mlruns/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1, [r.info.status for r in runs]
    return client, runs[0]


def all_artifacts(client, run_id, path=None) -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= all_artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return found


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    result = run_cli(tmp=tmp)
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp, result


def test_run_finishes_with_metrics_params_tags_and_artifacts(default_run):
    tmp, result = default_run
    client, run = only_run(tmp)
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    for key in (
        "test/accuracy",
        "test/class_avg_accuracy",
        "test/auc_micro",
        "test/auc_macro",
        "test/dotted/precision",
        "val/class_avg_accuracy",
        "val/ece",
        "test/ece",
        "train/accuracy",
    ):
        assert key in metrics, key
    assert 0 <= metrics["test/class_avg_accuracy"] <= 1
    assert run.data.params["data.skipped_files"] == "0" and run.data.params["data.test_images"]
    assert len(client.get_metric_history(run.info.run_id, "val/svm_C_class_avg_accuracy")) == 7
    params = run.data.params
    assert params["model.name"] == "resnet18" and params["resolution.size"] == "32"
    assert params["dataset.split.train_ratio"] == "0.75" and len(params["data.fingerprint"]) == 16
    assert float(params["classifier.chosen_C"]) in [0.0001, 0.001, 0.01, 0.1, 1, 10, 100]
    tags = run.data.tags
    assert (
        tags["pretrained"] == "false"
        and tags["classifier"] == "svm"
        and tags["model"] == "resnet18"
    )
    assert all_artifacts(client, run.info.run_id) >= ARTIFACTS
    models = client.search_logged_models(
        [run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
    )
    assert [m.name for m in models] == ["model"]
    assert run.info.run_id in result.stdout and "#/experiments/" in result.stdout


def test_run_prints_no_library_chatter_and_shows_the_svm_fitting(default_run):
    """Issue 28: no INFO lines of MLflow's or Optuna's; a bar while the SVM fits
    (tests/test_quiet_output.py checks a first run on a new store, and a sweep)."""
    _, result = default_run
    assert chatter(result.stdout + result.stderr) == []
    assert "fitting the SVM" in result.stderr


def test_run_records_the_precision_it_ran_in_and_its_featurisation_speed(default_run):
    tmp, _ = default_run
    _, run = only_run(tmp)
    native = native_bf16("cpu", cpu_flags(), False)  # this machine's answer, as the run's
    assert run.data.params["precision"] == ("bf16" if native else "fp32")
    assert run.data.tags["precision.requested"] == "auto"
    assert run.data.tags["precision.native_bf16"] == str(native).lower()
    assert run.data.metrics["time/featurize_images_per_second"] > 0
    # what it cost: wall and CPU seconds, within the run's own time in MLflow
    took = (run.info.end_time - run.info.start_time) / 1000
    assert 0 < run.data.metrics["time/run_seconds"] <= took
    assert 0 < run.data.metrics["time/cpu_seconds"] <= 2 * took * torch.get_num_threads()


def test_split_artifact_lists_every_image_once(default_run):
    tmp, _ = default_run
    client, run = only_run(tmp)
    path = client.download_artifacts(run.info.run_id, "data/split.csv", str(tmp))
    rows = Path(path).read_text().splitlines()
    assert rows[0] == "path,label,split" and len(rows) == 1 + 24
    assert len({r.split(",")[0] for r in rows[1:]}) == 24


@pytest.mark.slow  # a fresh process loads the model
def test_logged_model_predicts_in_a_fresh_process_without_the_config(default_run, tmp_path):
    tmp, _ = default_run
    _, run = only_run(tmp)
    images = [image_bytes(size=(80, 60), seed=s) for s in range(3)]
    script = f"""
import base64, json, mlflow, pandas as pd
mlflow.set_tracking_uri("sqlite:///{tmp}/mlruns/mlflow.db")
model = mlflow.pyfunc.load_model("runs:/{run.info.run_id}/model")
images = [bytes.fromhex(h) for h in {json.dumps([i.hex() for i in images])}]
out = model.predict(pd.DataFrame({{"image": [base64.b64encode(i).decode() for i in images]}}))
print(json.dumps(out.to_dict("records")))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(rows) == 3
    for row in rows:
        assert row["label"] in ("dotted", "leopard", "striped")
        assert row["score"] == pytest.approx(row[row["label"]])
        assert sum(row[c] for c in ("dotted", "leopard", "striped")) == pytest.approx(1, abs=1e-5)


@pytest.mark.slow  # a second run
def test_rerun_with_other_classifier_settings_reuses_the_cached_features(default_run):
    tmp, _ = default_run
    result = run_cli("classifier.C_values=[0.1,1]", "tracking.experiment=rerun", tmp=tmp)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "found in the cache, featurisation skipped" in result.stdout
    client = MlflowClient(f"sqlite:///{tmp}/mlruns/mlflow.db")
    (rerun,) = client.search_runs([client.get_experiment_by_name("rerun").experiment_id])
    assert "time/featurize_images_per_second" not in rerun.data.metrics  # nothing featurised


@pytest.mark.slow  # a run
def test_a_class_without_test_images_logs_nothing_there_and_the_scores_are_calibrated(tmp_path):
    """A test list without blue images: no test/blue/* metrics (not zeros), counted under
    data/ and said in the summary. The set is learnable: validation ECE at most 0.05."""
    root = write_colour_dataset(tmp_path / "colours", 50)
    listing = tmp_path / "test.tsv"
    listing.write_text("".join(f"{c}\t{i:03d}.jpg\n" for c in ("red", "green") for i in range(8)))
    result = run_cli(
        "dataset=folder", f"dataset.root={root}", f"dataset.split.test_list={listing}", tmp=tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "no test images of class(es) blue: no metrics for them on test" in result.stdout
    _, run = only_run(tmp_path)
    metrics = run.data.metrics
    assert [m for m in metrics if m.startswith("test/blue/")] == []
    assert "test/red/recall" in metrics and "val/blue/recall" in metrics
    params = run.data.params
    assert params["data.test_absent_classes"] == "1" and params["data.val_absent_classes"] == "0"
    assert run.data.tags["data.absent_classes.test"] == "blue"
    assert metrics["val/accuracy"] > 0.9 and metrics["val/ece"] <= 0.05


@pytest.mark.slow  # a run
def test_a_val_list_is_the_logged_validation_split_and_a_test_list_the_test_split(tmp_path):
    root = write_dataset(tmp_path / "pics", {"cat": 6, "dog": 6})
    (tmp_path / "val.tsv").write_text("cat\tcat_001.jpg\ndog\tdog_002.jpg\ndog\tdog/dog_005.jpg\n")
    (tmp_path / "test.tsv").write_text("cat\tcat_000.jpg\ndog\tdog_000.jpg\n")
    result = run_cli(
        "dataset=folder",
        f"dataset.root={root}",
        f"dataset.split.val_list={tmp_path}/val.tsv",
        f"dataset.split.test_list={tmp_path}/test.tsv",
        tmp=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    client, run = only_run(tmp_path)
    path = client.download_artifacts(run.info.run_id, "data/split.csv", str(tmp_path))
    rows = [row.split(",") for row in Path(path).read_text().splitlines()[1:]]
    sides = {side: {p for p, _, s in rows if s == side} for side in ("train", "val", "test")}
    assert sides["val"] == {"cat/cat_001.jpg", "dog/dog_002.jpg", "dog/dog_005.jpg"}
    assert sides["test"] == {"cat/cat_000.jpg", "dog/dog_000.jpg"} and len(sides["train"]) == 7
    assert run.data.params["dataset.split.val_list"] == f"{tmp_path}/val.tsv"


@pytest.mark.slow  # a run
def test_folder_dataset_with_a_corrupt_file_skips_it_and_says_so(tmp_path):
    root = write_dataset(tmp_path / "pics", {"cat": 5, "dog": 5})
    (root / "dog" / "broken.jpg").write_bytes(image_bytes(size=(200, 200))[:500])
    result = run_cli("dataset=folder", f"dataset.root={root}", tmp=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "skipped dog/broken.jpg: corrupt or truncated JPEG data" in result.stdout
    client, run = only_run(tmp_path)
    assert run.data.params["data.skipped_files"] == "1" and run.data.tags["dataset"] == "pics"
    listed = client.download_artifacts(run.info.run_id, "data/skipped_files.tsv", str(tmp_path))
    assert "dog/broken.jpg\tcorrupt or truncated JPEG data" in Path(listed).read_text()


@pytest.mark.slow  # a run
def test_too_small_class_is_a_one_line_error_and_the_run_is_marked_failed(tmp_path):
    root = write_dataset(tmp_path / "pics", {"cat": 5, "dog": 2})
    result = run_cli("dataset=folder", f"dataset.root={root}", tmp=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: class 'dog' has 2 images in {root}/dog; the split needs at least 3 "
        "(one each for train, validation and test)"
    ]
    _, run = only_run(tmp_path)
    assert run.info.status == "FAILED" and "class 'dog'" in run.data.tags["error"]


@pytest.mark.slow  # a whole run; tests/data/test_synthetic.py checks the guard in process
def test_own_images_under_the_default_dataset_are_refused_and_left_as_they_were(tmp_path):
    # `dataset.root=` without `dataset=folder`: the synthetic default once generated its
    # textures over the folder, deleting the user's images
    root = write_dataset(tmp_path / "pics", {"cat": 4, "dog": 4})
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    result = run_cli(f"dataset.root={root}", tmp=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: dataset.root={root} holds files but not the generated synthetic set; "
        "to train on your own images add dataset=folder (nothing was changed)"
    )
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    assert not list(tmp_path.glob("pics.tmp*"))
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert all(r.info.status != "RUNNING" for r in runs)


def test_unknown_option_lists_the_available_ones(tmp_path):
    result = run_cli("model=resnet99", tmp=tmp_path)
    assert result.returncode != 0
    assert "resnet18" in result.stderr and "resnet50" in result.stderr


@pytest.mark.slow  # waits out a connection timeout
def test_unreachable_tracking_server_stops_before_any_work(tmp_path):
    result = run_cli("tracking.uri=http://127.0.0.1:9", tmp=tmp_path, timeout=60)
    assert result.returncode == 1
    assert "cannot be reached" in result.stderr and not (tmp_path / "data").exists()


@pytest.mark.slow  # two runs
def test_tracking_uri_on_the_command_line_wins_over_the_environment(tmp_path):
    """MLFLOW_TRACKING_URI is often set in a shell; a store named on the command line is
    still where the run goes, and the environment's store is not touched."""
    environment = tmp_path / "environment.db"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "src.run",
            "resolution.size=32",
            "model.weights=none",
            "dataset.synthetic.images_per_class=8",
            "dataset.synthetic.image_size=64",
            f"paths.data_dir={tmp_path}/data",
            f"tracking.uri=sqlite:///{tmp_path}/mlruns/mlflow.db",
        ],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{environment}"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    only_run(tmp_path)
    assert not environment.exists()
