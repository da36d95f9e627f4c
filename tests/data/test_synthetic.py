"""The embedded default dataset: deterministic, and not separable by colour alone."""

import os

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

from src.data.images import read_image
from src.data.synthetic import CLASSES, ensure_synthetic_textures, render_image
from src.errors import UserError
from tests.conftest import use_every_core


def test_generation_is_deterministic_per_seed():
    first = render_image("leopard", np.random.default_rng([0, 1, 2]), 96)
    again = render_image("leopard", np.random.default_rng([0, 1, 2]), 96)
    other = render_image("leopard", np.random.default_rng([0, 1, 3]), 96)
    assert np.array_equal(first, again) and not np.array_equal(first, other)


def test_dataset_has_the_original_classes_as_jpeg_files(textures):
    assert sorted(p.name for p in textures.iterdir() if p.is_dir()) == list(CLASSES)
    image = read_image(next((textures / "striped").glob("*.jpg")))
    assert max(image.shape[:2]) == 64


@pytest.fixture(scope="module")
def colour_baseline_set(tmp_path_factory):
    return ensure_synthetic_textures(tmp_path_factory.mktemp("colour") / "set", 100, 96, 0)


def test_mean_colour_alone_cannot_tell_the_classes_apart(colour_baseline_set):
    features, labels = [], []
    for k, label in enumerate(CLASSES):
        for path in sorted((colour_baseline_set / label).glob("*.jpg")):
            features.append(read_image(path).reshape(-1, 3).mean(axis=0) / 255)
            labels.append(k)
    scores = cross_val_score(LogisticRegression(max_iter=1000), np.array(features), labels, cv=5)
    assert scores.mean() < 0.6, f"mean RGB separates the classes: {scores.mean():.2f}"


def test_an_empty_folder_is_generated_into_and_a_full_one_refused(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert sorted(p.name for p in ensure_synthetic_textures(empty, 2, 32, 0).iterdir()) == [
        ".complete",
        *CLASSES,
    ]
    mine = tmp_path / "mine"
    (mine / "cat").mkdir(parents=True)
    (mine / "cat" / "1.jpg").write_bytes(b"mine")
    with pytest.raises(UserError, match="add dataset=folder"):
        ensure_synthetic_textures(mine, 2, 32, 0)
    assert (mine / "cat" / "1.jpg").read_bytes() == b"mine"


def test_a_set_another_process_finished_first_is_kept_not_replaced(tmp_path, monkeypatch):
    """Two sweep workers may generate the same set at once: the one that finishes second
    uses the first one's set, which the first is already reading, and never removes it."""
    import shutil

    import src.data.synthetic as synthetic

    theirs = ensure_synthetic_textures(tmp_path / "theirs", 2, 32, 0)
    root = tmp_path / "set"
    real_replace = synthetic.os.replace

    def replace_just_after_another_process(source, target):
        shutil.copytree(theirs, root)  # the other worker's set lands a moment earlier
        (root / "being-read").touch()
        return real_replace(source, target)

    monkeypatch.setattr(synthetic.os, "replace", replace_just_after_another_process)
    assert ensure_synthetic_textures(root, 2, 32, 0) == root
    assert (root / "being-read").exists() and (root / ".complete").exists()
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []  # its own copy gone


def _generate_in_worker(root):
    # every core, so the set would be rendered by child processes: under `pytest -n 2` this
    # worker inherited one, where it renders in process and the test could not fail
    use_every_core()
    return ensure_synthetic_textures(root, images_per_class=2, image_size=32, seed=0)


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2,
    reason="renders in child processes only with two cores or more",
)
def test_a_joblib_worker_generates_the_set(tmp_path):
    # Hydra's joblib launcher runs sweep trials in loky workers, whose start method 'loky'
    # a spawned child cannot take: CI's slow run failed a trial on it.
    from joblib import Parallel, delayed

    roots = [tmp_path / "a", tmp_path / "b"]
    Parallel(n_jobs=2, backend="loky")(delayed(_generate_in_worker)(r) for r in roots)
    assert all(len(list(r.rglob("*.jpg"))) == 2 * len(CLASSES) for r in roots)
