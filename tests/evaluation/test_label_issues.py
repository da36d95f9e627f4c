"""Label issues from out-of-fold scores: planted flips come out on top, no-signal scores flag
nothing, near-duplicates with two labels are listed, and the list's invariants hold for any
labels (Hypothesis)."""

import csv

import numpy as np
import pytest
from cleanlab.filter import find_label_issues
from hypothesis import given, settings
from hypothesis import strategies as st

from src.classifiers.out_of_fold import folds_for, out_of_fold
from src.evaluation.label_issues import COLUMNS, OUT_OF_FOLD, label_issues, write_issues_csv

C_VALUES = [0.0001, 0.001, 0.01, 0.1, 1, 10, 100]  # conf/classifier/svm.yaml's


def clusters(per_class: int, classes: int, spread: float, seed: int, dims: int = 32):
    """Features of `classes` Gaussian clusters: learnable for a small spread, noise at 0."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), per_class)
    centres = rng.normal(size=(classes, dims)) * spread
    return centres[labels] + rng.normal(size=(len(labels), dims)), labels


def plant(labels: np.ndarray, share: float, classes: int, seed: int):
    """`labels` with `share` of them moved to a random other class; and which were."""
    rng = np.random.default_rng(seed)
    flipped = rng.choice(len(labels), round(share * len(labels)), replace=False)
    noisy = labels.copy()
    noisy[flipped] = (labels[flipped] + rng.integers(1, classes, len(flipped))) % classes
    return noisy, set(flipped.tolist())


def find(features, labels, classes: int, duplicates=()):
    names = [f"c{k}" for k in range(classes)]
    paths = [f"{names[y]}/{i:04d}.jpg" for i, y in enumerate(labels)]
    scores = out_of_fold(features, labels, classes, C_VALUES, True, seed=0)
    return label_issues(paths, ["train"] * len(labels), labels, names, scores, duplicates), paths


def test_planted_flips_in_a_learnable_set_are_the_top_ranked_issues():
    features, labels = clusters(60, 3, spread=1.0, seed=1)
    noisy, flipped = plant(labels, 0.10, 3, seed=2)
    issues, paths = find(features, noisy, 3)
    ranked = [paths.index(row["path"]) for row in issues.rows]
    found = set(ranked) & flipped
    assert len(found) >= 0.8 * len(flipped)  # recall
    assert len(found) >= 0.8 * len(ranked)  # precision
    top = ranked[: len(flipped) // 2]  # the most likely half: all planted
    assert set(top) <= flipped, (top, sorted(flipped))
    for row in issues.rows:
        assert row["suggested_label"] != row["given_label"]
        i = paths.index(row["path"])
        if i in flipped:  # the suggestion is the image's true class
            assert row["suggested_label"] == f"c{labels[i]}"


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), classes=st.integers(2, 5), per_class=st.integers(4, 40))
def test_scores_without_signal_flag_nothing_and_say_why(seed, classes, per_class):
    """Features that say nothing about the labels: confident learning alone would flag a
    large share of such a set (below), every one a guess; the guard flags none."""
    features, labels = clusters(per_class, classes, spread=0.0, seed=seed)
    scores = out_of_fold(features, labels, classes, C_VALUES, True, seed=0)
    if scores.calibration.fallback is None:  # a "signal" in pure noise: 5 % of draws
        return
    names = [f"c{k}" for k in range(classes)]
    paths = [f"{i:04d}.jpg" for i in range(len(labels))]
    issues = label_issues(paths, ["train"] * len(labels), labels, names, scores)
    assert not issues.flagged.any() and issues.rows == []
    assert issues.skipped.startswith("no evidence in the out-of-fold scores: ")
    assert all(np.isnan(share) for share in issues.noise_share.values())


def test_without_the_guard_confident_learning_flags_much_of_a_no_signal_set():
    """Why the guard exists: on 300 images of noise cleanlab flags many as issues."""
    features, labels = clusters(100, 3, spread=0.0, seed=0)
    scores = out_of_fold(features, labels, 3, C_VALUES, True, seed=0)
    assert scores.calibration.fallback is not None
    flagged = find_label_issues(labels, scores.probabilities, n_jobs=1)
    assert flagged.mean() > 0.2


def test_near_duplicates_with_two_labels_are_issues_whatever_the_scores_say():
    features, labels = clusters(30, 3, spread=1.0, seed=3)
    # images 0, 1 (class 0) and 40 (class 1): one picture, filed twice under c0 and once c1;
    # images 5 (c0) and 70 (c2): a tie, both in doubt
    groups = [["c0/0000.jpg", "c0/0001.jpg", "c1/0040.jpg"], ["c0/0005.jpg", "c2/0070.jpg"]]
    issues, paths = find(features, labels, 3, groups)
    rows = {row["path"]: row for row in issues.rows}
    assert rows["c1/0040.jpg"]["suggested_label"] == "c0"
    assert rows["c1/0040.jpg"]["reason"] == "near-duplicate of c0/0000.jpg (c0)"
    assert "c0/0000.jpg" not in rows and "c0/0001.jpg" not in rows  # the majority agrees
    assert rows["c0/0005.jpg"]["suggested_label"] == "c2"
    assert rows["c2/0070.jpg"]["suggested_label"] == "c0"


@st.composite
def small_datasets(draw):
    """Any small labelled set where every class has two images or more, with features
    from no signal to a clear one, and some near-duplicate groups."""
    classes = draw(st.integers(2, 4))
    counts = draw(st.lists(st.integers(2, 12), min_size=classes, max_size=classes))
    labels = np.repeat(np.arange(classes), counts)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    spread = draw(st.sampled_from([0.0, 0.5, 3.0]))
    features = rng.normal(size=(classes, 8))[labels] * spread + rng.normal(size=(len(labels), 8))
    if draw(st.booleans()):  # some labels flipped
        labels = np.where(
            rng.random(len(labels)) < 0.2, rng.integers(0, classes, len(labels)), labels
        )
    paths = [f"{i:03d}.jpg" for i in range(len(labels))]
    groups = draw(
        st.lists(
            st.lists(st.sampled_from(paths), min_size=2, max_size=3, unique=True),
            max_size=2,
        )
    )
    return features, labels, classes, paths, groups


@settings(max_examples=25, deadline=None)
@given(small_datasets())
def test_the_list_is_ranked_and_each_row_names_another_label(data):
    features, labels, classes, paths, groups = data
    if not folds_for(labels, classes):  # a flip left a class with one image
        with pytest.raises(ValueError, match="fewer than two images"):
            out_of_fold(features, labels, classes, C_VALUES, True, seed=0)
        return
    names = [f"c{k}" for k in range(classes)]
    scores = out_of_fold(features, labels, classes, C_VALUES, True, seed=0)
    assert np.allclose(scores.probabilities.sum(axis=1), 1)
    issues = label_issues(paths, ["val"] * len(labels), labels, names, scores, groups)
    listed = [row["path"] for row in issues.rows]
    assert len(listed) == len(set(listed)) == issues.flagged.sum()
    assert [row["score"] for row in issues.rows] == sorted(
        (row["score"] for row in issues.rows), reverse=True
    )
    for row in issues.rows:
        i = paths.index(row["path"])
        assert row["given_label"] == names[labels[i]] != row["suggested_label"]
        assert 0 <= row["score"] <= 1
        assert row["score"] == pytest.approx(1 - scores.probabilities[i, labels[i]], abs=1e-6)
        assert row["reason"] == OUT_OF_FOLD or row["reason"].startswith("near-duplicate of")
    if issues.skipped:
        assert all(row["reason"] != OUT_OF_FOLD for row in issues.rows)


def test_the_csv_has_the_columns_the_issue_names_in_the_list_order(tmp_path):
    features, labels = clusters(30, 3, spread=1.0, seed=4)
    noisy, _ = plant(labels, 0.1, 3, seed=5)
    issues, _ = find(features, noisy, 3)
    path = write_issues_csv(tmp_path / "label_issues.csv", issues)
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == COLUMNS[: len(rows[0])] == COLUMNS
    assert [r["path"] for r in rows] == [r["path"] for r in issues.rows]
    assert not list(tmp_path.glob("*.tmp*"))  # nothing half-written left beside it
