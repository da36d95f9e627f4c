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
from src.device import children_context


class ImageDataset(Dataset):
    """(pixels, label, index) per file; `transform` turns file bytes into uint8 pixels.

    Items are asked for by index, or by (index, seed) for a random transform such as
    `augment`, which then gets a generator of that seed (see `SeededItems`).
    A file that cannot be decoded (it changed since it was checked) yields a blank image
    and index -1, so a batch never fails; the caller drops those rows. `read` says why.
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

    def __getitem__(self, item):
        index, seed = item if isinstance(item, tuple) else (item, None)
        pixels, error = self.read(index, seed)
        if error:
            index = -1
        label = self.labels[index] if index >= 0 else -1
        return torch.from_numpy(pixels), label, index

    def read(self, index: int, seed=None) -> tuple[np.ndarray, str]:
        """(pixels, "") for a file that was read, else (a blank image, why not)."""
        try:
            data = Path(self.paths[index]).read_bytes()
            if seed is None:
                return self.transform(data), ""
            return self.transform(data, rng=np.random.default_rng(seed)), ""
        except ImageError as error:
            reason = str(error)
        except OSError as error:
            reason = f"cannot be read ({error.strerror or error})"
        return np.zeros((self.size, self.size, 3), np.uint8), reason


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


class SeededItems(Sampler):
    """The items of an epoch sampler, each with the seed of its random augmentation.

    The seed is (seed, epoch, index, position in the epoch): an image's augmentation depends
    neither on which worker process made it nor on what that worker made before. So worker
    processes can live across epochs, and a resumed run sees the pixels an uninterrupted
    one saw, whatever the number of workers."""

    def __init__(self, sampler: EpochSampler, seed: int):
        self.sampler, self.seed, self.epoch = sampler, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.sampler.set_epoch(epoch)

    def __iter__(self):
        # under torchrun, the position in the whole epoch's order (EpochSampler's slice
        # `rank::world_size`): N processes augment each image as one process would
        rank, world_size = self.sampler.rank, self.sampler.world_size
        for position, index in enumerate(self.sampler):
            yield index, (self.seed, self.epoch, index, position * world_size + rank)

    def __len__(self) -> int:
        return len(self.sampler)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    *,
    shuffle: bool = False,
    sampler=None,
    seed: int = 0,
    persistent: bool = False,
    drop_last: bool = False,
) -> DataLoader:
    """Batches of `dataset` from `num_workers` processes (0: in this process).

    `persistent`: the workers live as long as the loader, for a loader iterated once per
    epoch; forking and warming them up again each epoch costs more than an epoch of a small
    dataset on a GPU. Pinned memory on CUDA, so copies to the GPU can be asynchronous."""
    context = children_context() if num_workers > 0 else None
    if context == "none":
        num_workers, context = 0, None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=num_workers,
        multiprocessing_context=context,
        pin_memory=device.type == "cuda",
        persistent_workers=persistent and num_workers > 0,
        # batches waiting per worker: at least 2, and about 8 in all when workers are few
        prefetch_factor=max(2, 8 // num_workers) if num_workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),
        drop_last=drop_last,
    )
