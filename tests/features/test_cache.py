"""The feature cache: a hit skips featurisation; any change to what features depend on misses."""

import io
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from src.data.prepare import SplitSettings, prepare_dataset
from src.data.presets import ImageSpec
from src.device import Compute
from src.errors import UserError
from src.features.backbone import build_featurizer
from src.features.cache import cache_key, cached_features
from src.features.featurize import model_outputs
from src.modes import ModeSettings
from src.modes.job import Job
from src.modes.svm import fit_on_features

FEATURIZER = {"arch": "resnet18", "weights": "none", "size": 32, "preprocessing": "letterbox"}
CPU = ("cpu", "fp32")


def prepared(root: Path, cache: Path | None = None):
    return prepare_dataset(root, SplitSettings(0.75, 0.2), 0, None, cache, 2)


def test_second_request_is_served_from_the_cache_without_computing(textures, tmp_path):
    files = prepared(textures).files
    calls = []

    def compute():
        calls.append(1)
        return np.random.default_rng(0).random((len(files), 8), dtype=np.float32)

    first, hit_first = cached_features(tmp_path, FEATURIZER, files, compute, *CPU)
    second, hit_second = cached_features(tmp_path, FEATURIZER, files, compute, *CPU)
    assert (hit_first, hit_second) == (False, True) and len(calls) == 1
    assert np.array_equal(first, second)


def test_key_changes_with_resolution_weights_device_and_precision_not_file_dates(textures):
    files = prepared(textures).files
    base = cache_key(FEATURIZER, files, *CPU)
    assert cache_key({**FEATURIZER, "size": 64}, files, *CPU) != base
    assert cache_key({**FEATURIZER, "weights": "file:x:abc"}, files, *CPU) != base
    assert cache_key(FEATURIZER, files, "cuda", "bf16") != base  # GPU bf16 is not CPU fp32
    assert cache_key(FEATURIZER, files, "cpu", "bf16") != base
    path = files[0].path
    os.utime(path, ns=(files[0].mtime_ns + 10**9, files[0].mtime_ns + 10**9))
    touched = prepared(textures).files  # same bytes, another date: the same features
    os.utime(path, ns=(files[0].mtime_ns, files[0].mtime_ns))
    assert cache_key(FEATURIZER, touched, *CPU) == base


def bmp(seed: int) -> bytes:
    """A 40x40 BMP: always the same number of bytes, whatever the pixels."""
    pixels = np.random.default_rng(seed).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "BMP")
    return buffer.getvalue()


def test_a_file_replaced_by_same_size_content_with_its_date_restored_misses(tmp_path):
    """The issue's stale case: same size, mtime set back, other pixels. The image check
    (cached by size and dates) must notice, and the feature cache must not serve old rows."""
    root = tmp_path / "set"
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(4):
            (root / label / f"{i}.bmp").write_bytes(bmp(ord(label) * 10 + i))
    checks = tmp_path / "checks"
    before = prepared(root, checks)
    target = root / "a" / "0.bmp"
    stat = target.stat()
    time.sleep(0.05)  # the kernel's file clock ticks every few ms
    target.write_bytes(bmp(999))
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (target.stat().st_size, target.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    after = prepared(root, checks)
    assert before.fingerprint != after.fingerprint  # what `resume` compares
    rows = []

    def compute():
        rows.append(1)
        return np.zeros((len(before.files), 4), np.float32) + len(rows)

    cache = tmp_path / "features"
    cached_features(cache, FEATURIZER, before.files, compute, *CPU)
    features, hit = cached_features(cache, FEATURIZER, after.files, compute, *CPU)
    assert not hit and len(rows) == 2 and features[0, 0] == 2


def test_features_with_a_failed_file_are_never_cached_nor_given_to_the_svm(textures, tmp_path):
    data = prepared(textures)
    job = Job(
        files={s: data.subset(s) for s in ("train", "val", "test")},
        labels={s: data.labels(data.subset(s)) for s in ("train", "val", "test")},
        num_classes=len(data.classes),
        image=ImageSpec(32),
        compute=Compute(torch.device("cpu")),
        batch_size=4,
    )
    files = [f for s in ("train", "val", "test") for f in job.files[s]]
    rows = np.random.default_rng(0).random((len(files), 8), dtype=np.float32)
    rows[3] = np.nan  # a file that failed to decode this time
    first, hit = cached_features(tmp_path, FEATURIZER, files, lambda: rows, *CPU)
    assert not hit and list(tmp_path.iterdir()) == []
    with pytest.raises(UserError, match=f"1 image\\(s\\) could not be read.*{files[3].relpath}"):
        fit_on_features(job, torch.nn.Identity(), first, ModeSettings("svm", C_values=(1.0,)))


def test_featurize_returns_one_row_per_file_in_order(textures):
    files = prepared(textures).files
    featurizer, _ = build_featurizer("resnet18", "none")
    paths = [f.path for f in files[:5]]
    image = ImageSpec(32)
    features = model_outputs(featurizer, paths, image, Compute(torch.device("cpu")), 2)
    reversed_features = model_outputs(
        featurizer, paths[::-1], image, Compute(torch.device("cpu"), workers=1), 3
    )
    assert features.shape == (5, 512) and not np.isnan(features).any()
    assert np.allclose(features, reversed_features[::-1], atol=1e-4)
