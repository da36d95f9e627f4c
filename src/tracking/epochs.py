"""Following a refinement in MLflow while it runs: metrics per epoch and the training curve."""

import tempfile
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from src.classifiers.callbacks import MONITOR
from src.evaluation.plots import training_curve_figure


class EpochLogger:
    """A trainer callback (see src/classifiers/callbacks.py): logs each epoch's metrics with
    step=epoch and redraws `evaluation/training_curve.png`, so the MLflow UI shows the
    curves of a run that is still training."""

    name = "mlflow"

    def __init__(self, history: list[dict[str, float]] = ()):
        self.history = list(history)  # epochs before a resume, so the curve is whole

    def __call__(self, epoch: int, metrics: dict[str, float]) -> None:
        mlflow.log_metrics(metrics, step=epoch)
        self.history.append(metrics)
        with tempfile.TemporaryDirectory() as tmp:
            path = training_curve_figure(self.history, Path(tmp) / "training_curve.png")
            mlflow.log_artifact(str(path), "evaluation")


def log_missing_epochs(run_id: str, history: list[dict[str, float]]) -> None:
    """Epochs a resumed run has in its checkpoint but not in MLflow (the tracking server
    went away after the checkpoint was written, before the epoch was logged): logged now,
    so no step is missing."""
    logged = {m.step for m in MlflowClient().get_metric_history(run_id, MONITOR)}
    for epoch, metrics in enumerate(history):
        if epoch not in logged:
            mlflow.log_metrics(metrics, step=epoch)
