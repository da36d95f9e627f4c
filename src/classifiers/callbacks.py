"""What the refinement trainer calls after each epoch, and its early-stopping rule.

The callback interface (the sweep's pruning uses it):
    callback(epoch: int, metrics: dict[str, float]) -> bool | None
called after each epoch's validation, in order. `epoch` is 0-based and is also the MLflow
step; `metrics` holds that epoch's values under their MLflow names: `train/loss`,
`train/accuracy`, `val/loss`, `val/accuracy`, `val/class_avg_accuracy`, `lr`,
`time/epoch_seconds`, `time/train_images_per_second`. Returning True asks the trainer to
stop after this epoch; it then records the callback's `name` attribute (or its function or
type name) as the reason. Callbacks must not change the model.
"""

import math
from collections.abc import Callable

Callback = Callable[[int, dict[str, float]], bool | None]
MONITOR = "val/class_avg_accuracy"  # what "best epoch" and early stopping look at
EPOCH_METRICS = (
    "train/loss",
    "train/accuracy",
    "val/loss",
    "val/accuracy",
    MONITOR,
    "lr",
    "time/epoch_seconds",
    "time/train_images_per_second",
)


def best_epoch(history: list[dict[str, float]]) -> int:
    """The first epoch with the highest monitored value (earlier wins a tie)."""
    values = [h[MONITOR] for h in history]
    return values.index(max(values))


def kept_epoch(history: list[dict[str, float]], val_images: int) -> int:
    """The epoch whose weights a training keeps: the last one within two standard errors of
    the best (the one-standard-error rule of model selection, widened because the best of
    several noisy epochs is biased upwards, taking the most trained).

    On a small validation set the best epoch is mostly noise: on 30 images one image is
    0.033, and a best epoch 1 of 5 was kept while the schedule had not yet annealed. The
    standard error of an accuracy p on n images is sqrt(p (1 - p) / n), at least one image's
    worth (1 / n); on a large set the rule keeps the best epoch, or a later one as good."""
    values = [h[MONITOR] for h in history]
    best = max(values)
    return max(e for e, v in enumerate(values) if v >= best - selection_noise(best, val_images))


SELECTION_STANDARD_ERRORS = 2


def selection_noise(accuracy: float, images: int) -> float:
    """How far below the best an epoch may score and still count as good as it."""
    n = max(images, 1)
    return SELECTION_STANDARD_ERRORS * max(math.sqrt(accuracy * (1 - accuracy) / n), 1 / n)


def should_stop_early(history: list[dict[str, float]], patience: int) -> bool:
    """Stop when `patience` epochs in a row brought no improvement on the best (0: never)."""
    return patience > 0 and len(history) - 1 - best_epoch(history) >= patience


def callback_name(callback: Callback) -> str:
    named = getattr(callback, "name", None) or getattr(callback, "__name__", None)
    return named or type(callback).__name__
