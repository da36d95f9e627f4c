"""Running a featurizer over image files in batches: files → pooled feature vectors."""

from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from src.data.loader import ImageDataset, make_loader
from src.data.presets import load_pixels
from src.precision import autocast


def featurize(
    featurizer: nn.Module,
    paths: list[Path],
    size: int,
    mode: str,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    desc: str = "featurising",
    precision: str = "fp32",
) -> np.ndarray:
    """Features (N, D) float32 in the order of `paths`; NaN rows for files that failed to
    decode. Worker processes decode while the model computes; only uint8 pixels travel.
    `precision`: what the forward pass computes in (src/precision.py)."""
    loader = make_loader(image_files(paths, size, mode), batch_size, num_workers, device)
    return featurize_batches(featurizer, loader, device, desc, precision)


def image_files(paths: list[Path], size: int, mode: str) -> ImageDataset:
    """The files as the model sees them: `load_pixels`, the one preprocessing."""
    return ImageDataset(paths, [0] * len(paths), partial(load_pixels, size=size, mode=mode), size)


def featurize_batches(
    featurizer: nn.Module,
    loader,
    device: torch.device,
    desc: str = "featurising",
    precision: str = "fp32",
) -> np.ndarray:
    """`featurize` on a loader of `ImageDataset` batches (one kept across epochs, say).

    Each batch's features are copied back asynchronously and stored one batch later, once
    the next batch is queued: the GPU does not wait for copies, nor the loop for the GPU."""
    featurizer = prepare_for_inference(featurizer, device)
    count = len(loader.dataset)
    features, previous = None, None
    with (
        torch.inference_mode(),
        autocast(device, precision),
        tqdm(total=count, desc=desc, unit="img") as bar,
    ):
        for pixels, _, index in loader:
            batch = featurizer(pixels.to(device, non_blocking=True)).float()
            queued = (index, batch.to("cpu", non_blocking=True), copy_done(device))
            if previous is not None:
                features = store(features, count, *previous)
            previous = queued
            bar.update(len(index))
    if previous is not None:
        features = store(features, count, *previous)
    return features


def copy_done(device: torch.device) -> torch.cuda.Event | None:
    """An event that is reached when the copies queued so far have landed (None on the CPU,
    where copies are synchronous)."""
    if device.type != "cuda":
        return None
    event = torch.cuda.Event()
    event.record()
    return event


def store(features, count, index, batch, copied) -> np.ndarray:
    """Put one batch's rows in place (allocating `features` on the first); drop failed files."""
    if copied is not None:
        copied.synchronize()
    if features is None:
        features = np.full((count, batch.shape[1]), np.nan, np.float32)
    keep = index.numpy() >= 0
    features[index.numpy()[keep]] = batch.numpy()[keep]
    return features


def prepare_for_inference(model: nn.Module, device: torch.device) -> nn.Module:
    """Eval mode, on the device, channels-last (the layout CPU and GPU convolutions like)."""
    model = model.eval().to(device)
    return model.to(memory_format=torch.channels_last)
