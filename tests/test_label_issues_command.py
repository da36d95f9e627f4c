"""`python -m src.label_issues` end to end on real photos with planted flips: the flipped
images top the list, everything is logged to the run, and fixing the list's labels with
`src.relabel` gives a next run on a dataset MLflow tells apart."""

import csv
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from benchmarks.real_datasets import ensure_real_dataset
from tests.conftest import ROOT, run_cli, write_dataset
from tests.test_run import all_artifacts

FLIPS = 12  # of 210 images (scikit-image's three scientific photos, 70 crops each), and a copy


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """The scientific set as hard links, FLIPS of them filed under a wrong class (the
    true class kept in the file name, so a test can tell)."""
    source = ensure_real_dataset(tmp_path_factory.mktemp("real"), "scientific") / "images"
    root = tmp_path_factory.mktemp("planted") / "scientific"
    classes = sorted(p.name for p in source.iterdir())
    files = [(c, p) for c in classes for p in sorted((source / c).glob("*.jpg"))]
    rng = np.random.default_rng(0)
    picks = set(rng.choice(len(files), FLIPS, replace=False).tolist())
    flipped = set()
    for i, (label, path) in enumerate(files):
        given = (
            classes[(classes.index(label) + int(rng.integers(1, 3))) % 3] if i in picks else label
        )
        relpath = f"{given}/{label}__{path.name}"
        (root / given).mkdir(parents=True, exist_ok=True)
        os.link(path, root / relpath)
        if given != label:
            flipped.add(relpath)
    # a re-encoded copy of a retina crop filed under another class: a near-duplicate pair
    # with two labels, listed whatever the scores say
    copy = "immunohistochemistry/retina__copy_of_train_000.jpg"
    Image.open(root / "retina" / "retina__train_000.jpg").save(root / copy, quality=70)
    flipped.add(copy)
    return root, flipped


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_planted_flips_top_the_list_and_the_run_logs_it(planted, tmp_path):
    root, flipped = planted
    assert len(flipped) == FLIPS + 1
    result = run_cli(
        "dataset=folder", f"dataset.root={root}", tmp=tmp_path, module="src.label_issues"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("label issues: ") and " of 211 images flagged; list: " in last, last
    listed = read_rows(last.split("list: ", 1)[1])
    assert list(listed[0]) == ["path", "given_label", "suggested_label", "score", "split", "reason"]
    paths = [row["path"] for row in listed]
    assert set(paths[:5]) <= flipped, paths[:5]  # the most likely wrong are planted ones
    assert len(set(paths) & flipped) >= FLIPS // 2, paths  # recall, at 32 px and random weights
    assert len(set(paths) & flipped) >= 0.7 * len(paths)  # precision
    by_path = {row["path"]: row for row in listed}
    assert by_path["retina/retina__train_000.jpg"]["reason"] == (
        "near-duplicate of immunohistochemistry/retina__copy_of_train_000.jpg "
        "(immunohistochemistry)"
    )
    assert "immunohistochemistry/retina__copy_of_train_000.jpg" in by_path
    for row in listed:
        if row["path"] in flipped:  # planted: the suggestion is the photo it was cut from
            assert row["suggested_label"] == row["path"].split("/")[1].split("__")[0]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.status == "FINISHED"
    assert {
        "label_issues/label_issues.csv",
        "label_issues/label_issues.html",
        "label_issues/label_issues_table.json",
        "label_issues/per_class.png",
    } <= all_artifacts(client, run.info.run_id)
    metrics = run.data.metrics
    assert metrics["label_issues/flagged"] == len(listed)
    classes = ("hubble_deep_field", "immunohistochemistry", "retina")
    assert sum(metrics[f"label_issues/flagged/{c}"] for c in classes) == len(listed)
    assert all(0 <= metrics[f"label_issues/noise_share/{c}"] <= 1 for c in classes)
    assert metrics["label_issues/out_of_fold_class_avg_accuracy"] > 0.8


@pytest.mark.slow
def test_the_list_applied_with_relabel_makes_a_cleaner_dataset_mlflow_tells_apart(
    planted, tmp_path
):
    """The issue's loop: list, fix the labels with src.relabel, run again. The second run's
    datasets have other digests, and it finds fewer issues."""
    root = tmp_path / "scientific"
    shutil.copytree(planted[0], root, copy_function=os.link)
    first = run_cli(
        "dataset=folder", f"dataset.root={root}", tmp=tmp_path, module="src.label_issues"
    )
    assert first.returncode == 0, first.stderr[-3000:]
    listed = read_rows(first.stdout.strip().splitlines()[-1].split("list: ", 1)[1])
    moves = tmp_path / "relabel.csv"
    moves.write_text(
        "path,new_label\n" + "".join(f"{r['path']},{r['suggested_label']}\n" for r in listed)
    )
    moved = subprocess.run(
        [sys.executable, "-m", "src.relabel", f"moves={moves}", f"root={root}", "apply=true"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert moved.returncode == 0 and f"moved {len(listed)} file(s)" in moved.stdout, moved
    second = run_cli(
        "dataset=folder", f"dataset.root={root}", tmp=tmp_path, module="src.label_issues"
    )
    assert second.returncode == 0, second.stderr[-3000:]
    again = read_rows(second.stdout.strip().splitlines()[-1].split("list: ", 1)[1])
    assert len(again) < len(listed)
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    digests = [
        {i.dataset.name: i.dataset.digest for i in run.inputs.dataset_inputs} for run in runs
    ]
    assert len(digests) == 2 and digests[0] and digests[0] != digests[1]
    assert (
        runs[0].data.metrics["label_issues/flagged"] < runs[1].data.metrics["label_issues/flagged"]
    )


@pytest.mark.slow
def test_a_refined_run_ranks_on_its_own_network_and_a_tiny_set_still_finishes(tmp_path):
    """label_issues=true on classifier=dnn: the refined network featurises; on random
    pixels its out-of-fold scores carry no evidence, so nothing is flagged out of fold and
    the run says why, and finishes."""
    root = write_dataset(tmp_path / "noise", {"a": 8, "b": 8, "c": 8})
    result = run_cli(
        "classifier=dnn",
        "classifier.epochs=1",
        "dataset=folder",
        f"dataset.root={root}",
        "label_issues=true",
        tmp=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "featurising (refined)" in result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith(
        "label issues: 0 of 24 images flagged (no evidence in the out-of-fold"
    ), last
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.status == "FINISHED"
    assert run.data.tags["label_issues.skipped"].startswith("no evidence in the out-of-fold")
    assert "label_issues/label_issues.html" in all_artifacts(client, run.info.run_id)
