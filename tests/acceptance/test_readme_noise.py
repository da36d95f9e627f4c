"""What a run reports is what its logged model decides, on data with no signal at all.

Random-noise images in three class folders: every score is noise, calibration has nothing
to fit, ties and tiny margins are everywhere (where a temperature of e^-25 once made every
served decision class 0 and the reported numbers those of a model nobody trained). For
every classifier mode, in fp32 and bf16, the run as the README types it (own folder,
shrunk), then `python -m src.predict` on the run's test files re-scores the logged model:
its accuracy on them must equal the run's reported `test/accuracy` exactly.
"""

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.acceptance.conftest import Workspace, ok, run_id_of, shrunk, store

CLASSES = ("dotted", "leopard", "striped")
PER_CLASS = 8  # the acceptance runs' dataset.max_images_per_class


@pytest.fixture(scope="module")
def noise(tmp_path_factory) -> Workspace:
    space = Workspace(tmp_path_factory.mktemp("noise"))
    rng = np.random.default_rng(0)
    for label in CLASSES:
        folder = space.home / "noise" / label
        folder.mkdir(parents=True)
        for i in range(PER_CLASS):
            pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{label}_{i}.png")
    return space


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("mode", ["svm", "dnn", "svm_dnn_refined"])
def test_reported_test_accuracy_is_the_logged_models_own_on_noise(noise, mode, precision):
    run = ok(
        noise.run(
            shrunk(
                f"python -m src.run dataset=folder dataset.root=~/noise classifier={mode} "
                f"precision={precision}"
            )
        )
    )
    run_id = run_id_of(run.stdout)
    finished = store(noise).get_run(run_id)
    assert finished.info.status == "FINISHED"
    assert finished.data.params["precision"] == precision
    reported = finished.data.metrics["test/accuracy"]

    test_files = logged_test_files(noise, run_id)
    listing = noise.folder / f"test_{mode}_{precision}"
    for relpath in test_files:  # the run's test split, as files the user can point at
        target = listing / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(noise.home / "noise" / relpath)
    output = noise.folder / f"rescored_{mode}_{precision}.csv"
    ok(
        noise.run(
            f"python -m src.predict model=runs:/{run_id}/model input={listing} output={output}",
            MLFLOW_TRACKING_URI=f"sqlite:///{noise.folder}/mlruns/mlflow.db",
        )
    )
    with output.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(test_files) and not any(row["error"] for row in rows)
    right = sum(row["label"] == Path(row["path"]).parent.name for row in rows)
    assert right / len(rows) == reported, (mode, precision, right, len(rows), reported)
    # noise scores differ from image to image: equal scores everywhere (p = 1/3 for all, as
    # with T = e^-25) mean the temperature, not the network, made the decisions
    assert len({row["score"] for row in rows}) > 1, rows


def logged_test_files(space: Workspace, run_id: str) -> list[str]:
    """The run's test files (relative to the dataset root), from its logged split."""
    client = store(space)
    local = client.download_artifacts(run_id, "data/split.csv", str(space.folder / run_id))
    with open(local) as handle:
        return [row["path"] for row in csv.DictReader(handle) if row["split"] == "test"]
