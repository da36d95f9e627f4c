"""Finding a run's label issues and recording them in its MLflow run, under `label_issues/`:
the ranked list (label_issues.csv, and the same as a table), the review page, the picture
per class, and the counts as metrics. Asked for by `label_issues=true` on `src.run`, which
`python -m src.label_issues` sets.

The features are the run's own: the fixed featurizer's (from the feature cache, which the
run just filled) for `svm`; the refined network's for the refining modes. The latter has
been trained on these very labels, a wrong one included, so it tends to agree with them:
the out-of-fold SVM on its features sees each image held out, the network did not.
"""

import logging
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from src.classifiers.out_of_fold import folds_for, out_of_fold
from src.data.split import SPLITS
from src.evaluation.label_issues import COLUMNS, LabelIssues, label_issues, write_issues_csv
from src.evaluation.label_issues_page import write_label_issues_page
from src.evaluation.metrics import metric_name
from src.evaluation.plots import label_issues_figure
from src.modes.job import Fitted, Job, Network, features

log = logging.getLogger("imgsweep")

FOLDER = "label_issues"  # the artifacts' folder in the run
CSV = f"{FOLDER}/label_issues.csv"


def find_label_issues(
    job: Job, network: Network, fitted: Fitted, refines: bool, classes, duplicates, settings
) -> tuple[LabelIssues | None, str | None]:
    """The run's label issues, or (None, why) when a class is too small to hold images out."""
    files, labels, splits = every_image(job)
    if not folds_for(labels, len(classes)):
        counts = np.bincount(labels, minlength=len(classes))
        small = [c for c, n in zip(classes, counts, strict=True) if n < 2]
        return None, f"class {small[0]} has {counts[classes.index(small[0])]} image(s), under two"
    if refines:  # the refined network's features: computed now, never cached
        found = job.outputs(fitted.model.featurizer, job.all_paths(), "featurising (refined)")
    else:
        found, _ = features(job, network.model, network.cache_key, "featurising")
    scores = out_of_fold(
        found,
        labels,
        len(classes),
        list(settings.C_values or svm_C_values()),
        settings.l2_normalize,
        job.compute.seed,
    )
    issues = label_issues([f.relpath for f in files], splits, labels, classes, scores, duplicates)
    mlflow.log_metrics(
        {
            "label_issues/out_of_fold_class_avg_accuracy": scores.accuracy,
            "label_issues/svm_C": scores.C,
            "label_issues/folds": scores.folds,
        }
    )
    return issues, None


def every_image(job: Job) -> tuple[list, np.ndarray, list[str]]:
    """Every image of the job, its label and its split, in the order of job.all_paths() (the
    order the features and out-of-fold scores come in)."""
    files = [f for s in SPLITS for f in job.files[s]]
    labels = np.concatenate([job.labels[s] for s in SPLITS])
    return files, labels, [s for s in SPLITS for _ in job.files[s]]


def svm_C_values() -> list[float]:
    """The svm classifier's candidate Cs, from its config (a dnn run's settings have none)."""
    return list(OmegaConf.load(CONF / "classifier" / "svm.yaml").C_values)


CONF = Path(__file__).resolve().parents[2] / "conf"


def log_label_issues(
    issues: LabelIssues | None,
    why_not: str | None,
    job: Job,
    classes: list[str],
    root: Path,
    out: Path,
    title: str,
) -> Path | None:
    """Write and log the list, page, table, picture and counts; returns the CSV's local path
    in the run's artifacts (None when there was nothing to look for)."""
    if issues is None:
        mlflow.set_tag("label_issues.skipped", why_not)
        log.warning(f"label issues: not looked for: {why_not}")
        return None
    files, labels, splits = every_image(job)
    folder = out / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    write_issues_csv(folder / "label_issues.csv", issues)
    write_label_issues_page(
        folder / "label_issues.html",
        issues,
        files,
        labels,
        splits,
        classes,
        root,
        title=title,
        preprocessing=job.image.preprocessing,
    )
    flagged = np.bincount(labels[issues.flagged], minlength=len(classes))
    sizes = np.bincount(labels, minlength=len(classes))
    label_issues_figure(
        classes, flagged.tolist(), sizes.tolist(), issues.noise_share, folder / "per_class.png"
    )
    metrics = {"label_issues/flagged": int(issues.flagged.sum())}
    for k, name in enumerate(classes):
        metrics[f"label_issues/flagged/{metric_name(name)}"] = int(flagged[k])
        if not np.isnan(issues.noise_share[name]):
            metrics[f"label_issues/noise_share/{metric_name(name)}"] = issues.noise_share[name]
    mlflow.log_metrics(metrics)
    if issues.skipped:
        mlflow.set_tag("label_issues.skipped", issues.skipped)
        log.warning(f"label issues: none flagged out of fold: {issues.skipped}")
    table = pd.DataFrame(issues.rows, columns=list(COLUMNS))
    mlflow.log_table(table, f"{FOLDER}/label_issues_table.json")
    mlflow.log_artifacts(str(folder), FOLDER)
    return local_artifact(CSV)


def local_artifact(relpath: str) -> Path | None:
    """Where a logged artifact of the active run lies on this disk (None: a remote store)."""
    uri = mlflow.get_artifact_uri(relpath)
    if uri.startswith("file://"):
        return Path(uri.removeprefix("file://"))
    if "://" not in uri:
        return Path(uri)
    return None
