"""Choosing where the model runs, and how many threads and worker processes help it."""

import logging
import multiprocessing
import os
from dataclasses import dataclass

import torch

from src.errors import UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Compute:
    """How the networks run: where, in what precision the forward passes compute
    (src/precision.py), with how many loader processes, and from which seed."""

    device: torch.device
    precision: str = "fp32"  # fp32 | bf16 | fp16, resolved (never auto)
    workers: int = 0
    seed: int = 0


def pick_device(name: str = "auto") -> torch.device:
    """`auto` takes CUDA, then Apple's MPS, then the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name not in ("cpu", "cuda", "mps") and not name.startswith("cuda:"):
        raise UserError(f"device={name!r} is not one of auto, cpu, cuda, cuda:N, mps")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device={name} was asked for, but PyTorch sees no CUDA GPU here")
    if name == "mps" and not torch.backends.mps.is_available():
        raise UserError("device=mps was asked for, but MPS is not available here")
    return torch.device(name)


def configure(device: torch.device, processes: int = 1) -> None:
    """Speed settings that hold for the whole process; `processes` on this machine (under
    torchrun) share its cores."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick kernels
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        torch.set_num_threads(max(1, cpu_count() // processes))


def resolve_workers(num_workers: int | str, device: torch.device) -> int:
    """`auto`: on a GPU, a decoding process on every core but the one feeding the GPU (at
    most 16: an H200 trains resnet50 at about 2,500 images/s, a worker decodes and augments
    500-1,000). On the CPU the model keeps every core busy, so a worker slows it down by
    more than the decoding it takes over: with up to 4 cores this process decodes between
    batches (measured on 2 cores: end to end 95% of the pure forward, 90% with one worker);
    with more, where decoding in between would take a larger share, one worker per 8 cores."""
    if num_workers != "auto":
        try:
            count = int(num_workers)
        except ValueError:
            count = -1
        if count < 0:
            raise UserError(f"num_workers must be 0 or more (or auto), got {num_workers}")
        return count
    cores = cpu_count()
    if device.type != "cpu":
        return min(16, max(1, cores - 1))
    return 0 if cores <= 4 else max(1, cores // 8)


def children_context() -> str | None:
    """The start method for worker processes this process starts: None, the default, or
    "fork" under a start method children cannot take; "none" where no child may start.

    A worker of Hydra's joblib launcher runs under loky's start method: a spawned child fails
    on it ("cannot find context for 'loky'") and so do torch's DataLoader workers; forked
    ones inherit the process and work. A daemonic process may have no children at all."""
    if multiprocessing.current_process().daemon:
        return "none"
    if multiprocessing.get_start_method(allow_none=True) in (None, "fork", "spawn", "forkserver"):
        return None
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "none"


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1
