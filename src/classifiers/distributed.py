"""Refinement on several processes: `torchrun --nproc_per_node=N -m src.run classifier=dnn`.

torchrun starts N copies of the command with RANK, LOCAL_RANK and WORLD_SIZE set; each
process drives one GPU (NCCL), or on a machine without GPUs several CPU processes talk
through gloo. `classifier.batch_size` stays the global batch: each process takes its share
of every batch (EpochSampler's slice of the epoch's order) and DistributedDataParallel
averages the gradients, so N processes take the same optimiser steps as one process would,
and a config (learning rate, schedule) means the same on any number of GPUs.

Rank 0 alone tracks the run in MLflow, writes checkpoints, scores the test set and logs the
model; the other ranks train alongside it and then finish. `SINGLE` stands for the ordinary
one-process run: every method below is then the identity, at no cost.
"""

import logging
import os
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from src.errors import UserError

log = logging.getLogger(__name__)
# Rank 0 checks every image of the dataset before the others start; on a first run over a
# large folder that takes a while, longer than torch's default of 10 to 30 minutes.
TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # the process's number on its machine: its GPU
    local_world_size: int = 1  # processes on this machine

    @property
    def main(self) -> bool:
        """The process that tracks, checkpoints and scores."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def batch_share(self, batch_size: int) -> int:
        """This process's part of the global batch."""
        if batch_size % self.world_size:
            raise UserError(
                f"classifier.batch_size={batch_size} is the global batch; it must divide "
                f"evenly among the {self.world_size} processes"
            )
        return batch_size // self.world_size

    def wrap(self, model: nn.Module, device: torch.device, sync_batchnorm: bool) -> nn.Module:
        """The module the training steps go through (the model itself in one process)."""
        if not self.distributed:
            return model
        if sync_batchnorm and device.type != "cuda":
            raise UserError(
                "classifier.sync_batchnorm=true needs CUDA GPUs (torch's SyncBatchNorm has no "
                "CPU implementation); on the CPU leave it false, or freeze the batch norm with "
                "classifier.freeze_backbone=true"
            )
        if sync_batchnorm:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    def sum(self, *values: float) -> tuple[float, ...]:
        """Each value summed over all processes (counts and totals of an epoch)."""
        if not self.distributed:
            return values
        totals = torch.tensor(values, dtype=torch.float64, device=self._tensor_device())
        dist.all_reduce(totals)
        return tuple(totals.tolist())

    def broadcast(self, value):
        """Rank 0's value, on every process (a picklable object)."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def shard(self, items: list) -> list:
        """This process's share of a list to score: every world_size-th item."""
        return items[self.rank :: self.world_size] if self.distributed else items

    def gather_rows(self, rows: np.ndarray) -> np.ndarray:
        """The rows of every process's `shard`, back in the list's order, on every process."""
        if not self.distributed:
            return rows
        parts = [None] * self.world_size
        dist.all_gather_object(parts, rows)
        whole = np.empty((sum(len(p) for p in parts), *rows.shape[1:]), rows.dtype)
        for rank, part in enumerate(parts):
            whole[rank :: self.world_size] = part
        return whole

    def _tensor_device(self) -> torch.device:
        return torch.device("cuda", torch.cuda.current_device()) if _nccl() else torch.device("cpu")


SINGLE = Ranks()


def start(device: torch.device) -> tuple[Ranks, torch.device]:
    """Join the process group torchrun set up, if any; returns this process's ranks and
    the device it drives (cuda:LOCAL_RANK on a GPU machine)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return SINGLE, device
    ranks = Ranks(
        int(os.environ["RANK"]),
        world_size,
        int(os.environ.get("LOCAL_RANK", "0")),
        int(os.environ.get("LOCAL_WORLD_SIZE", world_size)),
    )
    if device.type == "cuda":
        if ranks.local_rank >= torch.cuda.device_count():
            raise UserError(
                f"process {ranks.local_rank} of this machine has no GPU: "
                f"{torch.cuda.device_count()} visible; use --nproc_per_node at most that"
            )
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise UserError(f"device={device.type}: several processes need CUDA GPUs or the CPU")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
    if not ranks.main:  # one voice in the log: rank 0's
        logging.getLogger().setLevel(logging.WARNING)
    log.info(f"process {ranks.rank} of {world_size} ({dist.get_backend()}, {device})")
    return ranks, device


def data_ready(ranks: Ranks, resume_from: str | None = None) -> str | None:
    """The rendezvous before refinement. Rank 0 calls it once it has checked and prepared
    the data (the others then find the image checks cached), with the checkpoint a resumed
    run continues from; the other ranks wait in it and get that checkpoint's path."""
    return ranks.broadcast(resume_from)


def stop(ranks: Ranks) -> None:
    if ranks.distributed and dist.is_initialized():
        dist.destroy_process_group()


def _nccl() -> bool:
    return dist.get_backend() == "nccl"
