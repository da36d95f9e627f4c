"""The learning-rate range test (Smith, 2017; fastai's `lr_find`).

The network is trained exactly as `train_network` would train it (`start_training` makes
the same optimiser, loaders, augmentation and precision), while the learning rate grows
exponentially from `start` to `end` over `steps` steps. The loss is smoothed (an
exponential moving average, bias-corrected) and the test stops early once the smoothed loss
passes `diverge` times its lowest value: the rate has become too high. The network's
weights are put back afterwards.

The suggestion is the rate at the lowest smoothed loss divided by 3 (DIVISOR): Smith's
rule for a cyclical schedule, whose upper bound is where the loss stops falling and whose
base rate is a third to a quarter of it. Chosen by measurement on the tests' learnable colour
set (3 classes x 40 images, 32 px, random weights, 60-step test, 4 epochs, validation
class-averaged accuracy for data/training seeds 0, 1, 2; `python -m pytest -s -n 0 -m slow
tests/classifiers/test_lr_finder.py -k learns`):

    rule                        suggested lr               accuracy per seed   mean
    default lr 0.005            -                          0.89  0.83  1.00    0.91
    minimum / 10 (fastai's)     0.0012  0.00073  0.00073   0.94  0.89  0.89    0.91
    valley (fastai's newer)     0.00028 0.00022  0.00056   0.67  0.72  0.83    0.74
    minimum / 3 (Smith's)       0.0039  0.0024   0.0024    0.94  1.00  1.00    0.98

fastai's rules err low for short trainings from scratch; the steepest fall of the loss was
tried too and lands on the test's first, noisy steps (1e-6).
"""

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch.nn.functional as F
from tqdm import tqdm

from src.classifiers.dnn import Refinement, start_training
from src.classifiers.network import ImageClassifier
from src.data.presets import ImageSpec
from src.device import Compute


@dataclass(frozen=True)
class RangeTest:
    """Settings of the test; conf/classifier/dnn.yaml's `lr_find` holds the defaults."""

    start: float = 1e-6
    end: float = 1.0
    steps: int = 200
    smoothing: float = 0.98
    diverge: float = 4.0


@dataclass
class LrFound:
    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # raw, per step
    smoothed: list[float] = field(default_factory=list)
    suggested: float = math.nan
    stopped_early: bool = False


def find_lr(
    model: ImageClassifier,
    train: tuple[list[Path], np.ndarray],
    settings: Refinement,
    image: ImageSpec,
    compute: Compute,
    test: RangeTest = RangeTest(),
) -> LrFound:
    """Run the range test on `model` (left as it was) and return its curve and suggestion."""
    saved = copy.deepcopy({k: v.cpu() for k, v in model.state_dict().items()})
    no_validation = ([], np.zeros(0, int))
    at_start = dataclasses.replace(settings, lr=test.start)
    training = start_training(model, train, no_validation, at_start, image, compute)
    found, average, best = LrFound(), 0.0, math.inf
    factor = (test.end / test.start) ** (1 / max(test.steps - 1, 1))
    training.step.train()
    if training.frozen is not None:
        training.frozen.eval()
    device, optimizer, scaler = compute.device, training.optimizer, training.scaler
    with tqdm(total=test.steps, desc="lr range test", unit="step") as bar:
        epoch = 0
        while len(found.lrs) < test.steps and not found.stopped_early:
            training.items.set_epoch(epoch)
            for pixels, labels, index in training.train_loader:
                keep = index >= 0
                if not keep.any():
                    continue
                step = len(found.lrs)
                lr = test.start * factor**step
                for group in optimizer.param_groups:  # the backbone at its share of the head's
                    group["lr"] = lr * group["lr_share"]
                pixels, labels = pixels[keep].to(device), labels[keep].to(device)
                with training.autocast:
                    loss = F.cross_entropy(
                        training.step(pixels).float(),
                        labels,
                        label_smoothing=training.label_smoothing,
                    )
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                value = loss.item()
                average = test.smoothing * average + (1 - test.smoothing) * value
                smoothed = average / (1 - test.smoothing ** (step + 1))
                found.lrs.append(lr)
                found.losses.append(value)
                found.smoothed.append(smoothed)
                bar.update(1)
                if not math.isfinite(smoothed) or smoothed > test.diverge * best:
                    found.stopped_early = True
                    break
                best = min(best, smoothed)
                if len(found.lrs) >= test.steps:
                    break
            epoch += 1
    model.load_state_dict(saved)
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    found.suggested = suggest(found.lrs, found.smoothed)
    return found


DIVISOR = 3  # the suggestion: the rate at the lowest smoothed loss / DIVISOR (see above)


def suggest(lrs: list[float], smoothed: list[float]) -> float:
    """The rate at the lowest smoothed loss, divided by DIVISOR (see the module's docstring)."""
    finite = [(loss, lr) for lr, loss in zip(lrs, smoothed, strict=True) if math.isfinite(loss)]
    if not finite:
        raise ValueError("the range test has no finite loss")
    _, at_minimum = min(finite)
    return at_minimum / DIVISOR


def lr_find_figure(found: LrFound, path: Path, title: str = "learning-rate range test") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(found.lrs, found.losses, color="#bbb", linewidth=0.8, label="loss per step")
    ax.plot(found.lrs, found.smoothed, color="#1f5fa6", linewidth=2, label="smoothed loss")
    minimum = int(np.nanargmin(found.smoothed))
    ax.scatter(
        [found.lrs[minimum]],
        [found.smoothed[minimum]],
        color="#333",
        zorder=3,
        label=f"lowest smoothed loss at {found.lrs[minimum]:.2g}",
    )
    ax.axvline(
        found.suggested,
        color="#d33",
        linestyle="--",
        label=f"suggested lr = {found.suggested:.2g} (minimum / {DIVISOR})",
    )
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss (cross-entropy)")
    low, high = min(found.smoothed), found.smoothed[0]
    ax.set_ylim(low - 0.1 * abs(high - low) - 1e-3, max(high, low) * 1.6 + 1e-3)
    ax.set_title(title + (" (stopped at divergence)" if found.stopped_early else ""))
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(True, which="both", alpha=0.25)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
