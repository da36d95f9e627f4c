"""Following a refinement in MLflow while it runs: metrics per epoch and the training curve."""

import tempfile
from pathlib import Path

import mlflow

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
