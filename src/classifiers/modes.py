"""The three ways to build a classifier (the original workflow's `classifier` setting).

  svm              linear SVM on the fixed (pretrained) network's pooled features
  dnn              the whole network refined with a new dropout → linear head
  svm_dnn_refined  refined as dnn, then the linear SVM on the refined network's features

The refining modes first `refine_network`, then make their `Fitted` from it. A `Fitted` is
the final ImageClassifier and its logits on every split, computed the way the served model
computes them. Under torchrun (`ranks`), every process refines, and rank 0 alone goes on to
score and fit the SVM.
"""

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from src.classifiers.calibration import fit_temperature, scale_linear
from src.classifiers.distributed import SINGLE, Ranks
from src.classifiers.dnn import Refined, Refinement, refine
from src.classifiers.network import ImageClassifier, make_head
from src.classifiers.svm import SvmFit, fit_svm_classifier
from src.data.folders import ImageFile
from src.errors import UserError
from src.evaluation.gradcam import ClassMaps, NoFeatureMap, scores_and_maps
from src.features.featurize import featurize

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


@dataclass
class Job:
    """What every mode works with, unpacked from the config."""

    files: dict[str, list[ImageFile]]  # by split
    labels: dict[str, np.ndarray]  # by split, class ids
    num_classes: int
    size: int
    preprocessing: str
    batch_size: int  # for featurising and scoring
    device: torch.device
    workers: int
    seed: int
    precision: str = "fp32"  # what forward passes compute in: fp32 | bf16 | fp16

    def paths(self, split: str) -> list[Path]:
        return [f.path for f in self.files[split]]

    def all_paths(self) -> list[Path]:
        return [p for s in SPLITS for p in self.paths(s)]

    def outputs(self, model: nn.Module, paths: list[Path], desc: str) -> np.ndarray:
        """`model` (a featurizer or a whole classifier) over `paths`, in batches."""
        return featurize(
            model,
            paths,
            self.size,
            self.preprocessing,
            self.batch_size,
            self.workers,
            self.device,
            desc,
            self.precision,
        )

    def scores_and_maps(self, model: nn.Module, split: str) -> tuple[np.ndarray, ClassMaps | None]:
        """`model`'s logits on a split and, from the same pass, its Grad-CAM maps (None,
        with a warning, for a network without a spatial map at this side)."""
        try:
            return scores_and_maps(
                model,
                self.paths(split),
                self.labels[split],
                self.size,
                self.preprocessing,
                self.batch_size,
                self.workers,
                self.device,
            )
        except NoFeatureMap as error:
            log.warning(f"no Grad-CAM heat maps on the results page: {error}")
            return self.outputs(model, self.paths(split), f"scoring {split}"), None

    def timed_outputs(self, model: nn.Module, paths: list[Path], desc: str):
        """`outputs`, and the images per second it took them (decoding included)."""
        started = time.perf_counter()
        outputs = self.outputs(model, paths, desc)
        return outputs, len(paths) / max(time.perf_counter() - started, 1e-9)


@dataclass
class Fitted:
    model: ImageClassifier
    head: str  # "svm" | "dnn": how the served model rebuilds its head
    logits: dict[str, np.ndarray]  # by split
    svm: SvmFit | None = None
    refined: Refined | None = None
    temperature: float = 1.0  # the scores' calibration, built into the model's last layer
    maps: ClassMaps | None = None  # Grad-CAM of the test split (predicted and true class)
    featurize_images_per_second: float | None = None  # None: the features came from the cache


def fit_svm(
    job: Job, featurizer: nn.Module, features: np.ndarray, C_values: list[float], l2_normalize: bool
) -> Fitted:
    """`features`: one row per file of job.all_paths(). A NaN row (a file that failed to
    read, though it passed the image check) is refused, never fitted nor scored."""
    files = [f for s in SPLITS for f in job.files[s]]
    if failed := [f.relpath for f, row in zip(files, features, strict=True) if np.isnan(row).any()]:
        raise UserError(
            f"{len(failed)} image(s) could not be read for featurisation, though they passed "
            f"the image check: {', '.join(failed[:3])}{' ...' if len(failed) > 3 else ''}; "
            "changed or removed during the run? Run again: the check will set them aside"
        )
    by_split, start = {}, 0
    for split in SPLITS:
        by_split[split] = features[start : start + len(job.files[split])]
        start += len(job.files[split])
    model, fit, logits = fit_svm_classifier(
        featurizer, by_split, job.labels, job.num_classes, C_values, l2_normalize, job.seed
    )
    # the test split scored by the whole network, as served, with its maps in the same pass
    logits["test"], maps = job.scores_and_maps(model, "test")
    return Fitted(model, "svm", logits, svm=fit, temperature=fit.temperature, maps=maps)


def fit_dnn(job: Job, model: ImageClassifier, refined: Refined) -> Fitted:
    """dnn: the refined network itself, scored on every split, its logits calibrated by a
    temperature fitted on validation (built into its last layer, so served scores are the
    calibrated ones; the validation ECE is then in-sample, the test ECE is the honest one).
    The test split is scored last, by the calibrated network, with its maps in that pass."""
    started = time.perf_counter()
    logits = {s: job.outputs(model, job.paths(s), f"scoring {s}") for s in ("train", "val")}
    rate = sum(len(job.paths(s)) for s in ("train", "val")) / max(
        time.perf_counter() - started, 1e-9
    )  # the network's featurisation speed, without the test split's Grad-CAM pass
    temperature = fit_temperature(logits["val"], job.labels["val"])
    scale_linear(model.head[-1], temperature)
    logits = {s: scores * temperature for s, scores in logits.items()}
    logits["test"], maps = job.scores_and_maps(model, "test")
    return Fitted(
        model,
        "dnn",
        logits,
        refined=refined,
        temperature=temperature,
        maps=maps,
        featurize_images_per_second=rate,
    )


def fit_svm_dnn_refined(
    job: Job,
    model: ImageClassifier,
    refined: Refined,
    C_values: list[float],
    l2_normalize: bool,
) -> Fitted:
    """svm_dnn_refined: the linear SVM on the refined network's pooled features."""
    features, rate = job.timed_outputs(model.featurizer, job.all_paths(), "featurising (refined)")
    fitted = fit_svm(job, model.featurizer, features, C_values, l2_normalize)
    fitted.refined, fitted.featurize_images_per_second = refined, rate
    return fitted


def refine_network(
    job: Job,
    featurizer: nn.Module,
    settings: Refinement,
    dropout: float,
    feature_size: int,
    callbacks: list,
    checkpoint: Path | None,
    resume: dict | None,
    ranks: Ranks = SINGLE,
) -> tuple[ImageClassifier, Refined]:
    """The featurizer with a new dropout → linear head, refined (see src/classifiers/dnn.py)."""
    head = make_head("dnn", feature_size, job.num_classes, dropout)
    model = ImageClassifier(featurizer, head, l2_normalize=False)
    refined = refine(
        model,
        (job.paths("train"), job.labels["train"]),
        (job.paths("val"), job.labels["val"]),
        settings,
        job.size,
        job.preprocessing,
        job.device,
        job.workers,
        job.seed,
        callbacks,
        checkpoint,
        resume,
        ranks,
        job.precision,
    )
    return model, refined
