"""Classification metrics on one split: what the original workflow reported, and more.

`class_avg_accuracy` is the mean of per-class accuracies (recall): unlike plain accuracy it
does not let a big class hide a bad small one. It is the objective for model selection.
`ece`, the expected calibration error, says whether the scores mean what they say: of the
images scored 0.8, about 80 % should be right.
"""

import re

import numpy as np
from sklearn.metrics import (
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

from src.classifiers.selection import class_avg_accuracy


def evaluate(y_true, scores: np.ndarray, classes: list[str], y_pred=None) -> dict:
    """Everything about one split's predictions. `scores`: (N, C) probabilities; `y_pred`:
    the model's decisions (the argmax of its logits), by default the argmax of `scores`.
    Accuracy, the confusion matrix and the ECE's "right" count go by `y_pred`, so what is
    reported is what the model decides even where probabilities tie."""
    y_true, scores = np.asarray(y_true), np.asarray(scores, dtype=np.float64)
    n_classes = len(classes)
    y_pred = scores.argmax(axis=1) if y_pred is None else np.asarray(y_pred)
    labels = list(range(n_classes))
    counts = confusion_matrix(y_true, y_pred, labels=labels)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    per_class = {
        name: {
            "accuracy": float(recall[k]) if support[k] else float("nan"),
            "precision": float(precision[k]),
            "recall": float(recall[k]),
            "f1": float(f1[k]),
            "support": int(support[k]),
        }
        for k, name in enumerate(classes)
    }
    return {
        "accuracy": float(np.mean(y_pred == y_true)) if len(y_true) else float("nan"),
        "class_avg_accuracy": class_avg_accuracy(y_true, y_pred, n_classes),
        "per_class": per_class,
        "confusion": counts,
        "confusion_normalized": counts / np.maximum(counts.sum(axis=1, keepdims=True), 1),
        **_roc(y_true, scores, classes),
        **calibration(y_true, scores, y_pred),
    }


ECE_BINS = 15  # equal-width confidence bins, as in Guo et al. 2017 (the usual ECE)


def calibration(y_true: np.ndarray, scores: np.ndarray, y_pred=None, bins: int = ECE_BINS) -> dict:
    """Expected calibration error of the top score: the images binned by their top score,
    |accuracy - mean top score| per bin, weighted by the bin's share of the images. Also
    each bin's (mean top score, accuracy, count), for the reliability diagram."""
    if not len(y_true):
        return {"ece": float("nan"), "reliability": []}
    y_pred = scores.argmax(axis=1) if y_pred is None else y_pred
    confidence, correct = scores[np.arange(len(y_pred)), y_pred], y_pred == y_true
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            mean_score, accuracy = confidence[members].mean(), correct[members].mean()
            table.append((float(mean_score), float(accuracy), int(members.sum())))
            ece += members.mean() * abs(accuracy - mean_score)
    return {"ece": float(ece), "reliability": table}


def _roc(y_true: np.ndarray, scores: np.ndarray, classes: list[str]) -> dict:
    """One-vs-rest ROC per class, plus micro- and macro-averaged AUC."""
    onehot = np.eye(len(classes), dtype=int)[y_true]
    curves = {}
    for k, name in enumerate(classes):
        if 0 < onehot[:, k].sum() < len(y_true):  # needs positives and negatives
            fpr, tpr, _ = roc_curve(onehot[:, k], scores[:, k])
            curves[name] = (fpr, tpr, float(roc_auc_score(onehot[:, k], scores[:, k])))
    has_both = 0 < onehot.sum() < onehot.size
    micro = float(roc_auc_score(onehot.ravel(), scores.ravel())) if has_both else float("nan")
    macro = float(np.mean([auc for _, _, auc in curves.values()])) if curves else float("nan")
    return {"roc": curves, "auc_micro": micro, "auc_macro": macro}


def flat_metrics(report: dict, prefix: str) -> dict[str, float]:
    """Scalar metrics under `prefix/`, in the names MLflow shows and compares. A class with
    no images in this split gets none: its recall is undefined, not 0 (absent_classes)."""
    metrics = {
        f"{prefix}/accuracy": report["accuracy"],
        f"{prefix}/class_avg_accuracy": report["class_avg_accuracy"],
        f"{prefix}/auc_micro": report["auc_micro"],
        f"{prefix}/auc_macro": report["auc_macro"],
        f"{prefix}/ece": report["ece"],
    }
    for name, values in report["per_class"].items():
        if not values["support"]:
            continue
        for key in ("accuracy", "precision", "recall", "f1"):
            metrics[f"{prefix}/{metric_name(name)}/{key}"] = values[key]
    return {k: v for k, v in metrics.items() if not np.isnan(v)}


def absent_classes(report: dict) -> list[str]:
    """The classes with no images in the split of this report."""
    return [name for name, values in report["per_class"].items() if not values["support"]]


def metric_name(text: str) -> str:
    """MLflow metric names allow letters, digits, _ - . / and space."""
    return re.sub(r"[^\w\-. ]", "_", text, flags=re.ASCII)
