"""The score that selects: the SVM's C on validation and refinement's best epoch both go by
class-averaged accuracy. src/evaluation/metrics.py reports this same function's number, so
the score that selected a model is the score reported for it."""

import warnings

import numpy as np
from sklearn.metrics import balanced_accuracy_score


def class_avg_accuracy(y_true, y_pred, num_classes: int | None = None) -> float:
    """Mean per-class recall over the classes that occur in y_true (scikit-learn's balanced
    accuracy); NaN for no images. `num_classes` is accepted for the callers' clarity only:
    a class absent from y_true has no recall to average."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if not len(y_true):
        return float("nan")
    with warnings.catch_warnings():  # "y_pred contains classes not in y_true": expected here
        warnings.simplefilter("ignore", UserWarning)
        return float(balanced_accuracy_score(y_true, y_pred))
