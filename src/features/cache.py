"""The feature cache: featurising is the slow step, and its result depends on few things.

A cache entry is keyed by everything the features depend on: the backbone and its weights,
the resolution and preprocessing, every file's content (its digest from the image check,
not its size and date), and what turns the same bytes into slightly other numbers: the
preprocessing code's version, the versions of the libraries that decode and compute, the
device type and the numeric precision (features made on a GPU in bf16 are not reused by a
CPU run in fp32, nor the other way round). A run that changes only classifier settings
finds its features here and skips featurisation. Features with a row of NaN (a file that
could not be read this time) are never cached.
"""

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import PIL
import torch
import torchvision

from src.atomic import written_atomically
from src.data.folders import ImageFile
from src.data.presets import PREPROCESSING_VERSION


def numerics(device_type: str, precision: str) -> dict:
    """What besides the inputs changes the features' numbers."""
    return {
        "preprocessing_version": PREPROCESSING_VERSION,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "opencv": cv2.__version__,
        "pillow": PIL.__version__,
        "numpy": np.__version__,
        "device": device_type,
        "precision": precision,
    }


def cache_key(featurizer: dict, files: list[ImageFile], device_type: str, precision: str) -> str:
    if any(not f.digest for f in files):
        raise ValueError("the feature cache needs the files' digests (from prepare_dataset)")
    content = {
        "featurizer": featurizer,
        "numerics": numerics(device_type, precision),
        "files": [f.digest for f in files],
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
    cache_dir: Path | None,
    featurizer: dict,
    files: list[ImageFile],
    compute: Callable,
    device_type: str,
    precision: str,
) -> tuple[np.ndarray, bool]:
    """Features for `files` from the cache, or computed (and cached unless a row is NaN);
    also says which. `precision`: "fp32", "bf16" or "fp16", as the features are computed."""
    if cache_dir is None:
        return compute(), False
    key = cache_key(featurizer, files, device_type, precision)
    features = load_features(cache_dir, key)
    if features is not None and len(features) == len(files) and not np.isnan(features).any():
        return features, True
    features = compute()
    if not np.isnan(features).any():
        save_features(cache_dir, key, features)
    return features, False
