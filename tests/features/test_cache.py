"""The feature cache: a hit skips featurisation; any change to what features depend on misses."""

import os

import numpy as np
import torch

from src.data.folders import find_images
from src.features.backbone import build_featurizer
from src.features.cache import cache_key, cached_features
from src.features.featurize import featurize

FEATURIZER = {"arch": "resnet18", "weights": "none", "size": 32, "preprocessing": "letterbox"}


def test_second_request_is_served_from_the_cache_without_computing(textures, tmp_path):
    _, files = find_images(textures)
    calls = []

    def compute():
        calls.append(1)
        return np.random.default_rng(0).random((len(files), 8), dtype=np.float32)

    first, hit_first = cached_features(tmp_path, FEATURIZER, files, compute)
    second, hit_second = cached_features(tmp_path, FEATURIZER, files, compute)
    assert (hit_first, hit_second) == (False, True) and len(calls) == 1
    assert np.array_equal(first, second)


def test_key_changes_with_resolution_weights_and_file_modification(textures):
    _, files = find_images(textures)
    base = cache_key(FEATURIZER, files)
    assert cache_key({**FEATURIZER, "size": 64}, files) != base
    assert cache_key({**FEATURIZER, "weights": "file:x:abc"}, files) != base
    path = files[0].path
    os.utime(path, ns=(files[0].mtime_ns + 10**9, files[0].mtime_ns + 10**9))
    _, touched = find_images(textures)
    os.utime(path, ns=(files[0].mtime_ns, files[0].mtime_ns))
    assert cache_key(FEATURIZER, touched) != base


def test_featurize_returns_one_row_per_file_in_order(textures):
    _, files = find_images(textures)
    featurizer, _ = build_featurizer("resnet18", "none")
    paths = [f.path for f in files[:5]]
    features = featurize(featurizer, paths, 32, "letterbox", 2, 0, torch.device("cpu"))
    reversed_features = featurize(
        featurizer, paths[::-1], 32, "letterbox", 3, 1, torch.device("cpu")
    )
    assert features.shape == (5, 512) and not np.isnan(features).any()
    assert np.allclose(features, reversed_features[::-1], atol=1e-4)
