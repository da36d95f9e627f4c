"""Batches of pixels for a model: a torch Dataset over image files, and its DataLoader.

Workers read and preprocess files in parallel and hand over uint8 (N, H, W, 3) batches;
conversion to float and normalisation happen on the model's device, where they are cheap.
"""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from src.data.images import ImageError
from src.data.presets import augment


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


class EpochSampler(Sampler):
    """The training images of one epoch, in a random order fixed by (seed, epoch).

    `balance`: smaller classes are oversampled (drawn again) up to the size of the largest.
    `max_images`: at most this many images per epoch (the original's rf_maxTrainImages).
    Call `set_epoch` before each epoch; a resumed run then sees the same order as an
    uninterrupted one.

    Under torchrun, process `rank` of `world_size` takes every world_size-th image of that
    order (as torch's DistributedSampler; the order is padded with its own start to a
    multiple of world_size, so every process takes as many steps). Step s of the processes
    together then sees exactly the images one process would see in step s, with a
    per-process batch of batch_size / world_size."""

    def __init__(
        self,
        labels,
        balance: bool,
        max_images: int | None,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.labels, self.balance, self.max_images = np.asarray(labels), balance, max_images
        self.seed, self.epoch = seed, 0
        self.rank, self.world_size = rank, world_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch])
        if self.balance:
            classes = np.unique(self.labels)
            largest = max(np.sum(self.labels == c) for c in classes)
            chosen = []
            for c in classes:
                members = np.flatnonzero(self.labels == c)
                extra = rng.choice(members, largest - len(members), replace=True)
                chosen.append(np.concatenate([members, extra]))
            pool = np.concatenate(chosen)
        else:
            pool = np.arange(len(self.labels))
        order = rng.permutation(pool)
        order = order[: self.max_images] if self.max_images else order
        if self.world_size > 1:
            padded = np.resize(order, -(-len(order) // self.world_size) * self.world_size)
            order = padded[self.rank :: self.world_size]
        return order

    def __iter__(self):
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return len(self.indices())


def augmented(data: bytes, size: int, crop: float, jitter: float, hflip: bool) -> np.ndarray:
    """`augment` with this process's random generator (seeded per worker and epoch)."""
    return augment(data, size, process_rng(), crop=crop, jitter=jitter, hflip=hflip)


_rng = {"seed": None, "generator": None}


def process_rng() -> np.random.Generator:
    """A generator following torch's seed of this process: in a loader worker that is the
    loader's per-worker seed, in the main process the last `torch.manual_seed`."""
    seed = torch.initial_seed()
    if _rng["seed"] != seed:
        _rng.update(seed=seed, generator=np.random.default_rng(seed % 2**63))
    return _rng["generator"]


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
    # Each worker's generators follow torch's per-worker seed: augmentation is reproducible
    # and differs between workers.
    np.random.seed(torch.initial_seed() % 2**32)
