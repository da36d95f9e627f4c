"""Batches of pixels for a model: a torch Dataset over image files, and its DataLoader.

Workers read and preprocess files in parallel and hand over uint8 (N, H, W, 3) batches;
conversion to float and normalisation happen on the model's device, where they are cheap.
"""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from src.data.images import ImageError


class ImageDataset(Dataset):
    """(pixels, label, index) per file; `transform` turns file bytes into uint8 pixels.

    A file that cannot be decoded (it changed since it was checked) yields a blank image
    and index -1, so a batch never fails; the caller drops those rows.
    """

    def __init__(self, paths: list[Path], labels: list[int], transform: Callable, size: int):
        self.paths, self.labels, self.transform, self.size = (
            list(paths),
            list(labels),
            transform,
            size,
        )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        try:
            pixels = self.transform(Path(self.paths[index]).read_bytes())
        except (ImageError, OSError):
            pixels, index = np.zeros((self.size, self.size, 3), np.uint8), -1
        label = self.labels[index] if index >= 0 else -1
        return torch.from_numpy(pixels), label, index


def make_loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    shuffle: bool = False,
    sampler=None,
    seed: int = 0,
) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        prefetch_factor=4 if num_workers > 0 else None,
        worker_init_fn=_seed_worker if num_workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),
    )


def _seed_worker(worker_id: int) -> None:
    # Each worker's numpy generator follows torch's per-worker seed: augmentation is
    # reproducible and differs between workers.
    np.random.seed(torch.initial_seed() % 2**32)
