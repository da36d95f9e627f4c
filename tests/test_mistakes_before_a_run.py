"""A mistake in a value or in the dataset folder is one line, within seconds, before torch
loads and before anything is recorded: no store, no experiment, no run, nothing generated.

Each used to surface 7-11 s into a run (an experiment or a FAILED run left behind) or as a
traceback (issue 24, point 7)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import FAST, ROOT, write_dataset

# (overrides, what the one line says); {tmp} is the test's folder
MISTAKES = {
    "no dataset.root": (["dataset=folder"], "dataset=folder needs dataset.root=PATH"),
    "a root that is not there": (
        ["dataset=folder", "dataset.root={tmp}/nowhere"],
        "dataset root {tmp}/nowhere does not exist; expected a folder of class folders",
    ),
    "one class": (
        ["dataset=folder", "dataset.root={tmp}/one"],
        "only one class ('cat') in {tmp}/one; a classifier needs at least two",
    ),
    "an empty folder": (
        ["dataset=folder", "dataset.root={tmp}/empty"],
        "no class folders in {tmp}/empty; expected a folder of class folders",
    ),
    "a negative learning rate": (
        ["classifier=dnn", "classifier.lr=-1"],
        "classifier.lr=-1: expected a positive number, or auto",
    ),
    "a ratio that is not a number": (
        ["dataset.split.train_ratio=abc"],
        "dataset.split.train_ratio=abc: expected a number between 0 and 1",
    ),
    "no C to choose from": (
        ["classifier.C_values=[]"],
        "classifier.C_values=[]: expected a non-empty list of positive numbers",
    ),
    "a seed that is not a number": (["seed=abc"], "seed=abc: expected an integer"),
    "a sweep with one bad option": (["-m", "seed=1,abc"], "seed=abc: expected an integer"),
    "a test list that is not UTF-8": (
        ["dataset=folder", "dataset.root={tmp}/two", "dataset.split.test_list={tmp}/test.tsv"],
        "dataset.split.test_list={tmp}/test.tsv: line 2 is not UTF-8 text (byte 0xe9)",
    ),
    "an image on both the test and the validation list": (
        [
            "dataset=folder",
            "dataset.root={tmp}/two",
            "dataset.split.test_list={tmp}/cat.tsv",
            "dataset.split.val_list={tmp}/cat.tsv",
        ],
        "cat/cat_000.jpg is in both dataset.split.test_list and val_list; an image can be on "
        "one side only",
    ),
    "dataset.root without dataset=folder": (
        ["dataset.root={tmp}/mine"],
        "dataset.root={tmp}/mine does not exist, and is given without dataset=folder: "
        "add dataset=folder",
    ),
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("mistakes")
    write_dataset(tmp / "one", {"cat": 3})
    write_dataset(tmp / "two", {"cat": 3, "dog": 3})
    (tmp / "empty").mkdir()
    (tmp / "cat.tsv").write_text("cat\tcat_000.jpg\n")
    (tmp / "test.tsv").write_bytes("cat\tcat_000.jpg\ndog\tcaf\xe9.jpg\n".encode("latin-1"))
    return tmp


@pytest.mark.parametrize("mistake", MISTAKES)
def test_a_mistake_is_one_line_before_torch_loads_and_before_anything_is_recorded(
    mistake, folders, tmp_path
):
    overrides, expected = MISTAKES[mistake]
    store = tmp_path / "mlflow.db"
    command = [
        *("-X", "importtime"),  # each import on stderr as it happens: torch must not be there
        *("-m", "src.run"),
        *[o.format(tmp=folders) for o in overrides],
        *FAST,
        f"tracking.uri=sqlite:///{store}",
        f"paths.data_dir={tmp_path}/data",
        f"paths.sweeps_dir={tmp_path}/sweeps",
    ]
    environment = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, *command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
    )
    elapsed = time.perf_counter() - started
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()]
    said = [line for line in result.stderr.splitlines() if not line.startswith("import time:")]
    assert result.returncode == 1 and result.stdout == "", result.stderr[-3000:]
    assert len(said) == 1 and said[0].startswith(f"error: {expected.format(tmp=folders)}"), said
    assert not {"torch", "mlflow", "optuna"} & set(imported)
    assert not store.exists() and not (tmp_path / "data").exists()
    assert not (folders / "mine").exists()  # nothing generated where the root pointed
    assert elapsed < 5, f"{elapsed:.1f} s"
