"""The linear SVM on pooled features (the original workflow's Part 1 classifier).

C is chosen by class-averaged accuracy on the validation split only; the final SVM is then
refit on train + validation with that C. The trained SVM is a linear map, so it becomes a
linear layer on top of the (L2-normalised) features: one torch module, pixels to scores.

Its margins become probabilities through one temperature T (softmax(T * margins), applied
after the layer, so no decision changes: src/classifiers/calibration.py). T is fitted for
the model that is served, the refit: on out-of-fold margins of its own data (train +
validation in folds, each margin from an SVM with the same C that did not see that image),
which is how the refit's margins look on new images.

Every fit solves the primal problem (liblinear's trust-region Newton method), not the dual
that LinearSVC's `dual="auto"` picks when there are fewer images than feature dimensions:
the dual's coordinate descent needs thousands of passes at large C on such data. On the
quick start's 336 images of 512 features it stopped unconverged at C = 100 after 5000
passes, 3.3 s a fit, eight such fits; the primal solves it in 16 Newton steps, 0.09 s, to
the same optimum (within 1e-5 in margin; the capped dual was 6e-3 off). The chosen C stays,
and so does every decision but those nearer a tie than the old fit's error: one test image
of 114 on the quick start, 4e-4 from a tie (tests/classifiers/test_svm_speed.py).
"""

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC
from torch import nn
from tqdm import tqdm

from src.classifiers.calibration import Calibration, fit_temperature
from src.classifiers.selection import class_avg_accuracy
from src.precision import autocast

MAX_ITER = 5000  # liblinear's Newton steps, a cap never reached: the primal takes 2-20
TOL = 1e-6  # liblinear's primal stopping tolerance (its default 1e-4 leaves margins 3e-3 off
# the optimum at C = 100, where a decision can turn; 1e-6 costs one or two more steps)
CALIBRATION_FOLDS = 5  # out-of-fold margins for the temperature: each SVM sees 80 % of the
# refit data, as the train-only SVM (val_ratio 0.2) sees; fewer where a class is smaller


@dataclass
class SvmFit:
    head: nn.Linear  # the refit SVM as a layer on the (normalised) features
    C: float
    val_scores: list[float]  # validation class-averaged accuracy per candidate C
    calibration: Calibration  # fitted on out-of-fold margins of the refit's data
    val_logits: np.ndarray  # from the SVM fit on train only: the honest validation scores

    @property
    def temperature(self) -> float:
        return self.calibration.temperature


def train_svm_head(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    C_values: list[float],
    num_classes: int,
    seed: int,
) -> SvmFit:
    """Choose C on validation, refit on train + validation, calibrate the refit on its
    out-of-fold margins. The test split is not an argument: it cannot leak into any of
    these choices."""
    refit_x, refit_y = np.concatenate([train_x, val_x]), np.concatenate([train_y, val_y])
    folds = calibration_folds(refit_y, num_classes)
    # one fit per candidate C, then the train-only one at the chosen C, the refit, the folds
    with tqdm(total=len(C_values) + 2 + folds, desc="fitting the SVM", unit="fit") as progress:
        C, val_scores = select_C(train_x, train_y, val_x, val_y, C_values, seed, progress)
        on_train = fit_svm(train_x, train_y, C, seed)
        progress.update()
        val_margins = decision_scores(on_train, val_x, num_classes)
        final = fit_svm(refit_x, refit_y, C, seed)
        progress.update()
        held_out = out_of_fold_margins(refit_x, refit_y, C, num_classes, seed, progress)
    if held_out is None:  # a class with a single image: no folds; its validation margins
        calibration = fit_temperature(val_margins, val_y)
    else:
        calibration = fit_temperature(held_out, refit_y)
    head = svm_as_linear(final, num_classes)
    val_logits = val_margins - val_margins.mean(axis=1, keepdims=True)
    return SvmFit(head, C, val_scores, calibration, val_logits)


def calibration_folds(y: np.ndarray, num_classes: int) -> int:
    """How many folds the out-of-fold margins use: fewer where a class is smaller; under two
    (a class with a single image) there are none."""
    folds = min(CALIBRATION_FOLDS, int(np.bincount(y, minlength=num_classes).min()))
    return folds if folds >= 2 else 0


def out_of_fold_margins(
    x: np.ndarray, y: np.ndarray, C: float, num_classes: int, seed: int, progress=None
) -> np.ndarray | None:
    """Each image's margins from an SVM (same C) fitted on the other folds; None when a
    class has fewer than two images (stratified folds then cannot hold every class)."""
    folds = calibration_folds(y, num_classes)
    if not folds:
        return None
    margins = np.empty((len(y), num_classes))
    for fitted_on, held_out in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        svm = fit_svm(x[fitted_on], y[fitted_on], C, seed)
        margins[held_out] = decision_scores(svm, x[held_out], num_classes)
        if progress is not None:
            progress.update()
    return margins


def l2_normalize(features: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, 1e-12)


def make_svm(C: float, seed: int) -> LinearSVC:
    """One-vs-rest linear SVM, classes weighted by inverse frequency, solved in the primal
    (why: this module's docstring)."""
    return LinearSVC(
        C=C,
        class_weight="balanced",
        dual=False,
        tol=TOL,
        max_iter=MAX_ITER,
        random_state=seed,
    )


def fit_svm(features: np.ndarray, labels: np.ndarray, C: float, seed: int) -> LinearSVC:
    # No ConvergenceWarning is hidden: the primal converges in a few dozen Newton steps on
    # any data tried (tests/classifiers/test_svm_speed.py); a fit that does not, says so.
    return make_svm(C, seed).fit(features, labels)


def select_C(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    C_values: list[float],
    seed: int,
    progress=None,
) -> tuple[float, list[float]]:
    """The C with the best validation class-averaged accuracy (ties: the smaller C), and
    every candidate's validation score in the order of C_values. `progress` (a tqdm bar)
    moves on by one per candidate."""
    if not C_values:
        raise ValueError("C_values is empty")
    scores = []
    for C in C_values:
        predicted = fit_svm(train_x, train_y, C, seed).predict(val_x)
        scores.append(class_avg_accuracy(val_y, predicted, num_classes=int(train_y.max()) + 1))
        if progress is not None:
            progress.update()
    best = max(scores)
    return min(C for C, score in zip(C_values, scores, strict=True) if score == best), scores


def decision_scores(svm: LinearSVC, features: np.ndarray, num_classes: int) -> np.ndarray:
    """(N, num_classes) margins, also for the binary case (where LinearSVC has one)."""
    weight, bias = svm_weights(svm, num_classes)
    return features @ weight.T + bias


def svm_weights(svm: LinearSVC, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    weight, bias = svm.coef_, svm.intercept_
    if num_classes == 2 and weight.shape[0] == 1:
        # one hyperplane w·x + b > 0 → class 1; as two rows whose difference is that margin
        weight = np.concatenate([-weight / 2, weight / 2])
        bias = np.concatenate([-bias / 2, bias / 2])
    return weight, bias


def svm_as_linear(svm: LinearSVC, num_classes: int) -> nn.Linear:
    """The SVM's margins as a torch linear layer.

    The classes' mean is taken off every logit (softmax and argmax ignore a shift shared by
    all classes): one-vs-rest margins share a large offset, which a calibrated T of 10^4 or
    more would blow up to scaled logits of 10^4 whose float32 rounding (1e-3) reaches the
    scores."""
    weight, bias = svm_weights(svm, num_classes)
    weight, bias = weight - weight.mean(axis=0), bias - bias.mean()
    layer = nn.Linear(weight.shape[1], num_classes)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        layer.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    return layer


def fit_svm_classifier(
    featurizer: nn.Module,
    features: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    num_classes: int,
    C_values: list[float],
    normalize: bool,
    seed: int,
    precision: str = "fp32",
):
    """The SVM mode: features of each split in, (ImageClassifier, SvmFit, logits per split)
    out. Validation logits come from the SVM that never saw the validation split; the
    others from the layer in `precision` (on the CPU), as the served network computes it."""
    from src.classifiers.network import ImageClassifier

    prepared = {s: l2_normalize(x) if normalize else x for s, x in features.items()}
    fit = train_svm_head(
        prepared["train"],
        labels["train"],
        prepared["val"],
        labels["val"],
        list(C_values),
        num_classes,
        seed,
    )
    model = ImageClassifier(featurizer, fit.head, l2_normalize=normalize)
    model.temperature = fit.temperature
    with torch.no_grad(), autocast(torch.device("cpu"), precision):
        logits = {
            s: fit.head(torch.from_numpy(x).float()).float().numpy() for s, x in prepared.items()
        }
    logits["val"] = fit.val_logits
    return model, fit, logits
