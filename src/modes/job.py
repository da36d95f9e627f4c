"""What every mode works with (`Job`, `Network`) and what each makes (`Fitted`)."""

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from src.classifiers.calibration import Calibration
from src.classifiers.dnn import TrainingResult
from src.classifiers.network import ImageClassifier
from src.classifiers.svm import SvmFit
from src.data.folders import ImageFile
from src.data.presets import ImageSpec
from src.data.split import SPLITS
from src.device import Compute
from src.evaluation.gradcam import ClassMaps, NoFeatureMap, scores_and_maps
from src.features.cache import cached_features
from src.features.featurize import model_outputs

log = logging.getLogger(__name__)


@dataclass
class Job:
    """The prepared data, and how the networks run over it."""

    files: dict[str, list[ImageFile]]  # by split
    labels: dict[str, np.ndarray]  # by split, class ids
    num_classes: int
    image: ImageSpec
    compute: Compute
    batch_size: int  # for featurising and scoring
    cache_dir: Path | None = None  # fixed features, kept across runs (None: no cache)

    def paths(self, split: str) -> list[Path]:
        return [f.path for f in self.files[split]]

    def all_paths(self) -> list[Path]:
        return [p for s in SPLITS for p in self.paths(s)]

    def outputs(self, model: nn.Module, paths: list[Path], desc: str) -> np.ndarray:
        """`model` (a featurizer or a whole classifier) over `paths`, in batches."""
        return model_outputs(model, paths, self.image, self.compute, self.batch_size, desc)

    def timed_outputs(self, model: nn.Module, paths: list[Path], desc: str):
        """`outputs`, and the images per second it took them (decoding included)."""
        started = time.perf_counter()
        outputs = self.outputs(model, paths, desc)
        return outputs, len(paths) / max(time.perf_counter() - started, 1e-9)

    def scores_and_maps(self, model: nn.Module, split: str) -> tuple[np.ndarray, ClassMaps | None]:
        """`model`'s logits on a split and, from the same pass, its Grad-CAM maps (None,
        with a warning, for a network without a spatial map at this side)."""
        try:
            return scores_and_maps(
                model,
                self.paths(split),
                self.labels[split],
                self.image,
                self.compute,
                self.batch_size,
            )
        except NoFeatureMap as error:
            log.warning(f"no Grad-CAM heat maps on the results page: {error}")
            return self.outputs(model, self.paths(split), f"scoring {split}"), None


@dataclass
class Network:
    """What a mode fits on: the fixed featurizer, or the network refinement made."""

    model: nn.Module  # a featurizer (pixels → pooled features) or a whole ImageClassifier
    training: TrainingResult | None = None  # how its training went (refining modes)
    # refined, then retrained on train + validation: the network trained on train alone,
    # which scores validation (held out from it) and calibrates; None: `model` itself
    held_out: nn.Module | None = None
    refit: list[dict[str, float]] | None = None  # the retraining's epochs (None: none)
    # everything the fixed featurizer's outputs depend on: its features are cached under it
    # (set for modes with cached_features; None: computed every run)
    cache_key: dict | None = None


@dataclass
class Fitted:
    model: ImageClassifier
    head: str  # "svm" | "dnn": how the served model rebuilds its head
    logits: dict[str, np.ndarray]  # by split: the model's own; their argmax is its decision
    svm: SvmFit | None = None
    training: TrainingResult | None = None  # how refinement went (refining modes)
    refit: bool = False  # the network was retrained on train + validation after
    calibration: Calibration = Calibration(1.0)  # T for softmax(T * logits), as served
    maps: ClassMaps | None = None  # Grad-CAM of the test split (predicted and true class)
    featurize_images_per_second: float | None = None  # None: the features came from the cache


def features(job: Job, featurizer: nn.Module, cache_key: dict | None, desc: str):
    """The featurizer's outputs on every file of job.all_paths(), from the cache when
    `cache_key` is given and they are there; returns them and the featurisation speed
    (None when they came from the cache)."""
    rates = []  # filled when the features are computed, not found

    def compute():
        outputs, rate = job.timed_outputs(featurizer, job.all_paths(), desc)
        rates.append(rate)
        return outputs

    if cache_key is None:
        return compute(), rates[0]
    files = [f for s in SPLITS for f in job.files[s]]
    found, hit = cached_features(
        job.cache_dir, cache_key, files, compute, job.compute.device.type, job.compute.precision
    )
    if hit:
        log.info(f"features: found in the cache, featurisation skipped ({len(files)} images)")
    return found, rates[0] if rates else None
