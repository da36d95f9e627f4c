"""The feature cache: featurising is the slow step, and its result depends on few things.

A cache entry is keyed by everything the features depend on: the backbone and its weights,
the resolution and preprocessing, and every file's path, size and modification time. A run
that changes only classifier settings finds its features here and skips featurisation.
"""

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from src.atomic import written_atomically
from src.data.folders import ImageFile


def cache_key(featurizer: dict, files: list[ImageFile]) -> str:
    content = {
        "featurizer": featurizer,
        "files": [[str(f.path), f.size, f.mtime_ns] for f in files],
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:24]


def load_features(cache_dir: Path, key: str) -> np.ndarray | None:
    path = Path(cache_dir) / f"{key}.npy"
    try:
        return np.load(path)
    except (OSError, ValueError):
        return None


def save_features(cache_dir: Path, key: str, features: np.ndarray) -> Path:
    path = Path(cache_dir) / f"{key}.npy"
    with written_atomically(path) as tmp, tmp.open("wb") as handle:
        np.save(handle, features)  # to a handle: np.save would add .npy to the temporary name
    return path


def cached_features(
    cache_dir: Path | None, featurizer: dict, files: list[ImageFile], compute: Callable
) -> tuple[np.ndarray, bool]:
    """Features for `files` from the cache, or computed (and cached); also says which."""
    if cache_dir is None:
        return compute(), False
    key = cache_key(featurizer, files)
    features = load_features(cache_dir, key)
    if features is not None and len(features) == len(files):
        return features, True
    features = compute()
    save_features(cache_dir, key, features)
    return features, False
