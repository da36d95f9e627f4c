"""Metrics checked against values worked out by hand."""

import numpy as np
import pytest

from src.evaluation.metrics import (
    absent_classes,
    class_avg_accuracy,
    evaluate,
    flat_metrics,
    metric_name,
)

CLASSES = ["a", "b", "c"]
# 6 images: a, a, a, b, b, c; predictions a, a, b, b, c, c
Y_TRUE = np.array([0, 0, 0, 1, 1, 2])
SCORES = np.array(
    [
        [0.8, 0.1, 0.1],
        [0.6, 0.3, 0.1],
        [0.3, 0.6, 0.1],
        [0.2, 0.7, 0.1],
        [0.1, 0.4, 0.5],
        [0.1, 0.2, 0.7],
    ]
)


def test_accuracy_and_class_averaged_accuracy():
    report = evaluate(Y_TRUE, SCORES, CLASSES)
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["class_avg_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)


def test_per_class_precision_recall_f1():
    per_class = evaluate(Y_TRUE, SCORES, CLASSES)["per_class"]
    assert per_class["a"]["precision"] == 1.0 and per_class["a"]["recall"] == pytest.approx(2 / 3)
    assert per_class["b"]["precision"] == pytest.approx(1 / 2)
    assert per_class["c"]["precision"] == pytest.approx(1 / 2) and per_class["c"]["recall"] == 1.0
    assert per_class["c"]["f1"] == pytest.approx(2 / 3)


def test_confusion_matrix_counts_and_rows():
    report = evaluate(Y_TRUE, SCORES, CLASSES)
    assert report["confusion"].tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert report["confusion_normalized"][1].tolist() == [0, 0.5, 0.5]


def test_roc_auc_per_class_micro_and_macro():
    report = evaluate(Y_TRUE, SCORES, CLASSES)
    # class c: positive score 0.7 beats every negative (max 0.5): AUC 1
    assert report["roc"]["c"][2] == 1.0
    # class a: positives 0.8, 0.6, 0.3 vs negatives 0.2, 0.1, 0.1: all 9 pairs ordered
    assert report["roc"]["a"][2] == 1.0
    # class b: positives 0.7, 0.4 vs negatives 0.1, 0.3, 0.6, 0.2: 7 of 8 pairs ordered
    assert report["roc"]["b"][2] == pytest.approx(7 / 8)
    assert report["auc_macro"] == pytest.approx((1 + 7 / 8 + 1) / 3)
    # micro: the 6 true-class scores against the 12 others, as one ranking (ties count half):
    # 0.8 and both 0.7s beat all 12; 0.6 beats 11, ties 1; 0.4 beats 10; 0.3 beats 9, ties 1
    assert report["auc_micro"] == pytest.approx((12 + 11.5 + 9.5 + 24 + 10) / 72)


def test_class_avg_accuracy_ignores_classes_absent_from_the_truth():
    assert class_avg_accuracy([0, 0, 1], [0, 1, 1], num_classes=3) == pytest.approx((0.5 + 1) / 2)


def test_flat_metrics_use_prefixes_and_safe_names():
    metrics = flat_metrics(evaluate(Y_TRUE, SCORES, ["a", "b b", "c/ü"]), "test")
    assert metrics["test/accuracy"] == pytest.approx(4 / 6)
    assert "test/b b/precision" in metrics and "test/c__/recall" in metrics
    assert metric_name("naïve") == "na_ve"


def test_a_class_absent_from_a_split_gets_no_metrics_there_not_zeros():
    report = evaluate(np.array([0, 0, 1]), SCORES[[0, 1, 3]], CLASSES)  # no image of c
    metrics = flat_metrics(report, "test")
    assert absent_classes(report) == ["c"]
    assert not [name for name in metrics if name.startswith("test/c/")]
    assert metrics["test/a/recall"] == 1.0 and metrics["test/b/recall"] == 1.0


def test_expected_calibration_error_by_hand():
    # top scores 0.8, 0.6, 0.6, 0.7, 0.5, 0.7; right, right, wrong, right, wrong, right
    report = evaluate(Y_TRUE, SCORES, CLASSES)
    # 15 bins: {0.5}, {0.6, 0.6} one right, {0.7, 0.7} both right, {0.8} right
    expected = (abs(0 - 0.5) + 2 * abs(0.5 - 0.6) + 2 * abs(1 - 0.7) + abs(1 - 0.8)) / 6
    assert report["ece"] == pytest.approx(expected)
    assert flat_metrics(report, "val")["val/ece"] == pytest.approx(expected)
    assert sum(count for _, _, count in report["reliability"]) == 6
