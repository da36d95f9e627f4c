"""The score that selects: the SVM's C on validation and refinement's best epoch both go by
class-averaged accuracy. src/evaluation/metrics.py reports this same function's number, so
the score that selected a model is the score reported for it."""

import numpy as np


def class_avg_accuracy(y_true, y_pred, num_classes: int) -> float:
    """Mean per-class recall over the classes that occur in y_true."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    recalls = [np.mean(y_pred[y_true == k] == k) for k in range(num_classes) if np.any(y_true == k)]
    return float(np.mean(recalls)) if recalls else float("nan")
