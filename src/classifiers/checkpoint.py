"""Checkpoints of a refinement: everything needed to continue exactly where it stopped.

Written after every epoch (atomically: a crash mid-write leaves the previous one intact),
so a run killed mid-epoch loses at most that epoch.
"""

import random
from pathlib import Path

import numpy as np
import torch

from src.atomic import written_atomically


def save_checkpoint(path: Path, state: dict) -> None:
    with written_atomically(path) as tmp:
        torch.save({**state, "rng": rng_state()}, tmp)


def load_checkpoint(path: Path) -> dict:
    # weights_only=False: the checkpoint holds optimiser and RNG states; it is our own file
    return torch.load(path, map_location="cpu", weights_only=False)


def rng_state() -> dict:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
