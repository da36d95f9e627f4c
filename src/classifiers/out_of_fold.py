"""Out-of-fold class probabilities for every image: what a model that never saw an image
thinks its class is. Label issues are found from these (src/evaluation/label_issues.py).

The images (all of them, every split) are cut into stratified folds; each fold is scored by
the linear SVM of src/classifiers/svm.py fitted on the other folds. C is the candidate with
the best out-of-fold class-averaged accuracy (ties: the smaller C), one number chosen on
thousands of held-out decisions. The margins become probabilities through one temperature
fitted on the same out-of-fold margins (src/classifiers/calibration.py), with its guard:
where the margins carry no signal the temperature stays 1 and the calibration says so,
which is how a caller knows that these probabilities must not be read as evidence.
"""

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedKFold
from tqdm import tqdm

from src.classifiers.calibration import Calibration, fit_temperature, probabilities
from src.classifiers.selection import class_avg_accuracy
from src.classifiers.svm import CALIBRATION_FOLDS, decision_scores, fit_svm, l2_normalize


@dataclass(frozen=True)
class OutOfFold:
    probabilities: np.ndarray  # (N, K), calibrated; row i from an SVM that did not see image i
    C: float
    accuracy: float  # class-averaged accuracy of the out-of-fold decisions (argmax)
    folds: int
    calibration: Calibration  # its `fallback` says why the scores carry no evidence


def folds_for(labels: np.ndarray, num_classes: int) -> int:
    """CALIBRATION_FOLDS, fewer where a class is smaller; 0 where a class has under two
    images (a stratified fold cannot then hold out one of them and keep one to learn)."""
    smallest = int(np.bincount(labels, minlength=num_classes).min())
    folds = min(CALIBRATION_FOLDS, smallest)
    return folds if folds >= 2 else 0


def out_of_fold(
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    C_values: list[float],
    normalize: bool,
    seed: int,
) -> OutOfFold:
    """Out-of-fold probabilities of `features` (one row per image) for `labels`. Raises
    ValueError when a class has fewer than two images."""
    folds = folds_for(labels, num_classes)
    if not folds:
        raise ValueError("a class has fewer than two images: no image can be held out of it")
    x = l2_normalize(features) if normalize else features
    cuts = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, labels))
    best = None
    with tqdm(total=len(C_values) * folds, desc="out-of-fold SVMs", unit="fit") as progress:
        for C in sorted(C_values):  # ascending: a tie keeps the smaller C
            margins = np.empty((len(labels), num_classes))
            for fitted_on, held_out in cuts:
                svm = fit_svm(x[fitted_on], labels[fitted_on], C, seed)
                margins[held_out] = decision_scores(svm, x[held_out], num_classes)
                progress.update()
            accuracy = class_avg_accuracy(labels, margins.argmax(axis=1), num_classes)
            if best is None or accuracy > best[1]:
                best = (C, accuracy, margins)
    C, accuracy, margins = best
    margins = margins - margins.mean(axis=1, keepdims=True)  # the offset one-vs-rest shares
    calibration = fit_temperature(margins, labels)
    return OutOfFold(
        probabilities(margins, calibration.temperature), C, accuracy, folds, calibration
    )
