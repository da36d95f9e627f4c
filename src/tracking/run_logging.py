"""What a run records about its data, its classifier and its evaluation (params, metrics,
artifacts), written into `out` (a folder uploaded at the end) or logged at once."""

import logging
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.data.dataset import Dataset

from src.data.duplicates import write_groups_tsv
from src.data.folders import ImageFile
from src.data.overview import write_overview
from src.data.prepare import PreparedData
from src.data.split import write_split_csv
from src.evaluation.metrics import absent_classes, flat_metrics
from src.evaluation.plots import (
    c_selection_figure,
    confusion_figure,
    reliability_figure,
    roc_figure,
)
from src.tracking.mlflow_run import log_params_once

log = logging.getLogger("imgsweep")


def log_data(data: PreparedData, out: Path) -> None:
    counts = data.counts()
    log.info(
        f"dataset {data.root}: {len(data.classes)} classes, "
        + ", ".join(f"{n} {s}" for s, n in counts.items())
        + (f", {len(data.skipped)} skipped" if data.skipped else "")
    )
    leaks = data.leaky_duplicates()
    absent = data.absent_classes()
    # Counts as params, not metrics: one value each, which the UI would draw as a chart of
    # its own, mostly zeros, in a `data` section ahead of the test scores (sections sort by
    # name). As params they are columns of the runs table, and its search filters on them.
    log_params_once(
        {
            "data.fingerprint": data.fingerprint,
            "data.root": str(data.root),
            "data.classes": ",".join(data.classes),
            "data.skipped_files": len(data.skipped),
            "data.duplicate_groups": len(data.duplicates),
            "data.leaky_duplicates": len(leaks),
            **{f"data.{s}_images": n for s, n in counts.items()},
            # a class with no images in a split has no metrics there (not zeros)
            **{f"data.{s}_absent_classes": len(names) for s, names in absent.items()},
        }
    )
    mlflow.set_tags({f"data.absent_classes.{s}": ",".join(n) for s, n in absent.items() if n})
    (out / "data").mkdir(exist_ok=True)
    labels = {f.relpath: f.label for f in data.files}
    write_split_csv(out / "data" / "split.csv", data.split, labels)
    skipped = "path\treason\n" + "".join(f"{p}\t{r}\n" for p, r in data.skipped)
    (out / "data" / "skipped_files.tsv").write_text(skipped, encoding="utf-8")
    write_groups_tsv(out / "data" / "leaky_duplicates.tsv", leaks, labels, data.split)
    sizes = {relpath: (check.width, check.height) for relpath, check in data.checks.items()}
    write_overview(out / "data", data.classes, data.files, data.split, sizes)


def absent_class_lines(reports: dict) -> list[str]:
    """For the run summary: the classes a split has no images of (nothing logged for them)."""
    return [
        f"  no {split} images of class(es) {', '.join(names)}: no metrics for them on {split}"
        for split, report in reports.items()
        if (names := absent_classes(report))
    ]


def log_svm_selection(C_values: list[float], fit, out: Path) -> None:
    for step, score in enumerate(fit.val_scores):
        mlflow.log_metric("val/svm_C_class_avg_accuracy", score, step=step)
    log_params_once({"classifier.chosen_C": fit.C})
    (out / "classifier").mkdir(exist_ok=True)
    c_selection_figure(C_values, fit.val_scores, fit.C, out / "classifier" / "svm_C_selection.png")


def log_calibration(calibration) -> None:
    """The temperature the served scores use and, where the fit was not kept, why (a tag:
    the runs table can filter on it)."""
    log_params_once({"classifier.temperature": calibration.temperature})
    if calibration.fallback:
        mlflow.set_tag("calibration.fallback", calibration.fallback)


def log_evaluation(
    reports: dict,
    classes: list[str],
    out: Path,
    per_epoch: frozenset[str] = frozenset(),
    datasets: dict[str, Dataset] | None = None,
) -> None:
    """The final model's metrics on each split, each tied to its split's dataset (see
    src/tracking/datasets.py), so they carry its name and digest. A name that a refinement
    already logs per epoch (`val/accuracy`, ...) is logged as `<split>/eval_<name>` instead,
    so each epoch keeps exactly one value per step."""
    for split, report in reports.items():
        metrics = flat_metrics(report, split)
        mlflow.log_metrics(
            {
                (
                    name.replace(f"{split}/", f"{split}/eval_", 1) if name in per_epoch else name
                ): value
                for name, value in metrics.items()
            },
            dataset=(datasets or {}).get(split),
        )
    (out / "evaluation").mkdir(exist_ok=True)
    roc_figure(reports["test"], out / "evaluation" / "roc_test.png")
    reliability_figure(reports, out / "evaluation" / "reliability.png")
    confusion_figure(reports["test"], classes, out / "evaluation" / "confusion_test.png")


PREDICTIONS_TABLE = "evaluation/predictions_test.json"  # beside evaluation/results_test.html


def log_test_predictions(
    files: list[ImageFile], y_true, probabilities: np.ndarray, classes: list[str]
) -> None:
    """The test predictions as an MLflow table, one row per image, to query and compare
    across runs (`mlflow.load_table`, the UI's artifact view)."""
    mlflow.log_table(predictions_table(files, y_true, probabilities, classes), PREDICTIONS_TABLE)


def predictions_table(
    files: list[ImageFile], y_true, probabilities: np.ndarray, classes: list[str]
) -> pd.DataFrame:
    """path, true_label, predicted_label, score (the predicted class's probability), one
    `p_<class>` column per class, and correct; in the order of `files`."""
    y_true, probabilities = np.asarray(y_true), np.asarray(probabilities, dtype=float)
    predicted = probabilities.argmax(axis=1)
    names = np.array(classes)
    table = pd.DataFrame(
        {
            "path": [f.relpath for f in files],
            "true_label": names[y_true],
            "predicted_label": names[predicted],
            "score": probabilities[np.arange(len(files)), predicted],
        }
    )
    for k, name in enumerate(classes):
        table[f"p_{name}"] = probabilities[:, k]
    table["correct"] = predicted == y_true
    return table
