"""The learning-rate range test (Smith, 2017; fastai's `lr_find`).

The network is trained, exactly as `refine` would train it (same optimiser, momentum,
weight decay, batch size, augmentation), while the learning rate grows exponentially from
`start` to `end` over `steps` steps. The loss is smoothed (an exponential moving average,
bias-corrected) and the test stops early once the smoothed loss passes `diverge` times its
lowest value: the rate has become too high. The network's weights are put back afterwards.

The suggestion is the rate at the lowest smoothed loss divided by 10 (fastai's
"minimum / 10" rule): at the minimum itself the loss has stopped falling, one decade lower
it still falls steeply and training is stable.
"""

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from src.classifiers.distributed import SINGLE
from src.classifiers.dnn import Refinement, epoch_loaders
from src.classifiers.network import ImageClassifier
from src.data.loader import EpochSampler


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
    size: int,
    preprocessing: str,
    device: torch.device,
    workers: int,
    seed: int,
    test: RangeTest = RangeTest(),
) -> LrFound:
    """Run the range test on `model` (left as it was) and return its curve and suggestion."""
    saved = copy.deepcopy({k: v.cpu() for k, v in model.state_dict().items()})
    model = model.to(device).to(memory_format=torch.channels_last)
    if settings.freeze_backbone:
        for parameter in model.featurizer.parameters():
            parameter.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(
        trainable, lr=test.start, momentum=settings.momentum, weight_decay=settings.weight_decay
    )
    sampler = EpochSampler(
        train[1], settings.balance_classes, settings.max_train_images, seed, 0, 1
    )
    batch_size = min(settings.batch_size, len(train[0]))
    items, loader, _ = epoch_loaders(
        train,
        ([], np.zeros(0, int)),
        sampler,
        settings,
        size,
        preprocessing,
        batch_size,
        device,
        workers,
        seed,
        SINGLE,
    )
    found, average, best = LrFound(), 0.0, math.inf
    factor = (test.end / test.start) ** (1 / max(test.steps - 1, 1))
    model.train()
    with tqdm(total=test.steps, desc="lr range test", unit="step") as bar:
        epoch = 0
        while len(found.lrs) < test.steps and not found.stopped_early:
            items.set_epoch(epoch)
            for pixels, labels, index in loader:
                keep = index >= 0
                if not keep.any():
                    continue
                step = len(found.lrs)
                lr = test.start * factor**step
                for group in optimizer.param_groups:
                    group["lr"] = lr
                pixels, labels = pixels[keep].to(device), labels[keep].to(device)
                loss = F.cross_entropy(model(pixels).float(), labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
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


def suggest(lrs: list[float], smoothed: list[float]) -> float:
    """The rate at the lowest smoothed loss, divided by 10 (see the module's docstring)."""
    finite = [(loss, lr) for lr, loss in zip(lrs, smoothed, strict=True) if math.isfinite(loss)]
    if not finite:
        raise ValueError("the range test has no finite loss")
    _, at_minimum = min(finite)
    return at_minimum / 10


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
        label=f"suggested lr = {found.suggested:.2g} (minimum / 10)",
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
