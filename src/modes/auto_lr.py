"""`classifier.lr=auto`: the range test inside the run, its plot and suggestion logged, then
refinement with the suggested rate."""

import dataclasses
import logging
import tempfile
from pathlib import Path

import mlflow
import torch

from src.classifiers.dnn import Refinement
from src.classifiers.lr_finder import DIVISOR, LrFound, RangeTest, find_lr, lr_find_figure
from src.classifiers.network import ImageClassifier, make_head
from src.errors import UserError
from src.modes.job import Job

log = logging.getLogger(__name__)
SUGGESTED = "lr_find.suggested"  # the run's param: the rate its refinement used


def range_test_settings(lr_find: dict | None) -> RangeTest:
    known = {f.name for f in dataclasses.fields(RangeTest)}
    return RangeTest(**{k: v for k, v in (lr_find or {}).items() if k in known})


def run_range_test(
    job: Job, featurizer, settings: Refinement, dropout, feature_size, test
) -> LrFound:
    """The test on the job's training split with the refinement's own head and settings."""
    head = make_head("dnn", feature_size, job.num_classes, dropout)
    model = ImageClassifier(featurizer, head, l2_normalize=False)
    train = (job.paths("train"), job.labels["train"])
    return find_lr(model, train, settings, job.image, job.compute, test)


def log_range_test(found: LrFound) -> None:
    """lr_find.png and the suggestion, in the active MLflow run."""
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.log_artifact(str(lr_find_figure(found, Path(tmp) / "lr_find.png")))
    mlflow.log_params({SUGGESTED: f"{found.suggested:.4g}", "lr_find.steps_run": len(found.lrs)})


def resolve_lr(job: Job, featurizer, settings: Refinement, dropout, feature_size, lr_find):
    """`settings` with lr=auto replaced by the range test's suggestion (logged); other
    values of lr pass through unchanged. A resumed run goes on at the rate its own test
    chose: a second test would cost its steps and could suggest another rate."""
    if settings.lr != "auto":
        try:
            return dataclasses.replace(settings, lr=float(settings.lr))
        except (TypeError, ValueError):
            raise UserError(f"classifier.lr={settings.lr!r}: expected a number or auto") from None
    if torch.distributed.is_initialized():
        raise UserError(
            "classifier.lr=auto runs in one process: run python -m src.lr_find first, then "
            "torchrun with classifier.lr=<its suggestion>"
        )
    if (chosen := chosen_before()) is not None:
        log.info(f"lr range test: not run again; lr {chosen}, as this run's test suggested")
        return dataclasses.replace(settings, lr=float(chosen))
    found = run_range_test(
        job, featurizer, settings, dropout, feature_size, range_test_settings(lr_find)
    )
    log_range_test(found)
    log.info(
        f"lr range test: suggested lr {found.suggested:.3g} (lowest smoothed loss / {DIVISOR})"
    )
    return dataclasses.replace(settings, lr=float(f"{found.suggested:.4g}"))


def chosen_before() -> str | None:
    """The rate the active run's range test suggested, when it is a resumed run that ran one
    (its params keep it)."""
    run = mlflow.active_run()
    return mlflow.get_run(run.info.run_id).data.params.get(SUGGESTED) if run else None
