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


def should_stop_early(history: list[dict[str, float]], patience: int) -> bool:
    """Stop when `patience` epochs in a row brought no improvement on the best (0: never)."""
    return patience > 0 and len(history) - 1 - best_epoch(history) >= patience


def callback_name(callback: Callback) -> str:
    named = getattr(callback, "name", None) or getattr(callback, "__name__", None)
    return named or type(callback).__name__
