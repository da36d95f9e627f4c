"""Running a network over image files in batches: files → its outputs (a featurizer's
pooled feature vectors, a classifier's logits)."""

from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from src.data.loader import ImageDataset, make_loader
from src.data.presets import ImageSpec, load_pixels
from src.device import Compute
from src.precision import autocast


def model_outputs(
    model: nn.Module,
    paths: list[Path],
    image: ImageSpec,
    compute: Compute,
    batch_size: int,
    desc: str = "featurising",
) -> np.ndarray:
    """`model`'s outputs (N, D) float32 in the order of `paths`: pooled features for a
    featurizer, logits for a whole classifier; NaN rows for files that failed to decode.
    Worker processes decode while the model computes; only uint8 pixels travel."""
    loader = make_loader(image_files(paths, image), batch_size, compute.workers, compute.device)
    return loader_outputs(model, loader, compute, desc)


def image_files(paths: list[Path], image: ImageSpec) -> ImageDataset:
    """The files as the model sees them: `load_pixels`, the one preprocessing."""
    pixels = partial(load_pixels, size=image.size, mode=image.preprocessing)
    return ImageDataset(paths, [0] * len(paths), pixels, image.size)


def loader_outputs(
    model: nn.Module, loader, compute: Compute, desc: str = "featurising"
) -> np.ndarray:
    """`model_outputs` on a loader of `ImageDataset` batches (one kept across epochs, say).

    Each batch's outputs are copied back asynchronously and stored one batch later, once
    the next batch is queued: the GPU does not wait for copies, nor the loop for the GPU."""
    device = compute.device
    model = prepare_for_inference(model, device)
    count = len(loader.dataset)
    outputs, previous = None, None
    with (
        torch.inference_mode(),
        autocast(device, compute.precision),
        tqdm(total=count, desc=desc, unit="img") as bar,
    ):
        for pixels, _, index in loader:
            batch = model(pixels.to(device, non_blocking=True)).float()
            queued = (index, batch.to("cpu", non_blocking=True), copy_done(device))
            if previous is not None:
                outputs = store(outputs, count, *previous)
            previous = queued
            bar.update(len(index))
    if previous is not None:
        outputs = store(outputs, count, *previous)
    return outputs


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
