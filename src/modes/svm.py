"""svm: the linear SVM on the fixed (pretrained) network's pooled features.

The features depend on the backbone alone, so they come from the cache when an earlier run
computed them (`Network.cache_key`). A NaN row (a file that failed to read, though it passed
the image check) is refused, never fitted nor scored.
"""

import numpy as np
from torch import nn

from src.classifiers.svm import fit_svm_classifier
from src.data.split import SPLITS
from src.errors import UserError
from src.modes.job import Fitted, Job, Network, features


def fit(job: Job, network: Network, settings) -> Fitted:
    found, rate = features(job, network.model, network.cache_key, "featurising")
    fitted = fit_on_features(job, network.model, found, settings)
    fitted.featurize_images_per_second = rate
    return fitted


def fit_on_features(job: Job, featurizer: nn.Module, features: np.ndarray, settings) -> Fitted:
    """The SVM on `features` (one row per file of job.all_paths()), C chosen on validation;
    the test split scored by the whole network, as served, with its maps in the same pass."""
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
        featurizer,
        by_split,
        job.labels,
        job.num_classes,
        list(settings.C_values),
        settings.l2_normalize,
        job.compute.seed,
        "fp32" if job.compute.precision == "fp16" else job.compute.precision,  # CPU autocast
    )
    logits["test"], maps = job.scores_and_maps(model, "test")
    return Fitted(model, "svm", logits, svm=fit, calibration=fit.calibration, maps=maps)
