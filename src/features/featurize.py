"""Running a featurizer over image files in batches: files → pooled feature vectors."""

from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from src.data.loader import ImageDataset, make_loader
from src.data.presets import load_pixels


def featurize(
    featurizer: nn.Module,
    paths: list[Path],
    size: int,
    mode: str,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    desc: str = "featurising",
) -> np.ndarray:
    """Features (N, D) float32 in the order of `paths`; NaN rows for files that failed to
    decode. Worker processes decode while the model computes; only uint8 pixels travel."""
    featurizer = prepare_for_inference(featurizer, device)
    dataset = ImageDataset(
        paths, [0] * len(paths), partial(load_pixels, size=size, mode=mode), size
    )
    loader = make_loader(dataset, batch_size, num_workers, device)
    features = None
    progress = tqdm(total=len(paths), desc=desc, unit="img")
    with torch.inference_mode(), autocast(device), progress:
        for pixels, _, index in loader:
            batch = featurizer(pixels.to(device, non_blocking=True)).float().cpu().numpy()
            if features is None:
                features = np.full((len(paths), batch.shape[1]), np.nan, np.float32)
            keep = index.numpy() >= 0
            features[index.numpy()[keep]] = batch[keep]
            progress.update(len(index))
    return features


def prepare_for_inference(model: nn.Module, device: torch.device) -> nn.Module:
    """Eval mode, on the device, channels-last (the layout CPU and GPU convolutions like)."""
    model = model.eval().to(device)
    return model.to(memory_format=torch.channels_last)


def amp_dtype(device: torch.device, enabled: bool = True) -> torch.dtype | None:
    """Mixed precision where it pays: bf16 on GPUs that have it, else fp16; none on the CPU."""
    if device.type != "cuda" or not enabled:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device, enabled: bool = True):
    dtype = amp_dtype(device, enabled)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)
