"""Scores that mean what they say: one temperature T turns a model's logits into
probabilities, softmax(T * logits), and never takes part in a decision.

The decision is the argmax of the logits themselves (`decisions`); T is applied after them
(`ImageClassifier.probabilities`, the served model, the ONNX graph), never built into the
weights. So no T, however small or large, and no precision can change a label: the old
design scaled the last layer by T, and where held-out scores carried no signal the fit ran
to T = e^-25, every float32 logit became equal, and every image was labelled class 0.

T is fitted by the lowest log loss on held-out scores (temperature scaling, Guo et al.
2017; for the SVM on out-of-fold margins, see svm.py), with two guards, each of which keeps
T = 1 and says why (`Calibration.fallback`, logged as the tag `calibration.fallback`):
- no signal: the fitted T does not predict the held-out labels significantly better than
  the uniform scores T -> 0 tends to (a likelihood-ratio test, one parameter, 5 %);
- a bound: T is searched within BOUNDS of the logits' own scale, so that scaled logits stay
  well inside float32 (and bf16); a fit that ends on a bound has found no interior optimum.
Where every held-out score picks the right class the log loss has no minimum (it falls as
T grows); then T is set so that the mean top probability is (n + 1) / (n + 2), the accuracy
that n right out of n supports (Laplace's rule).
"""

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar, root_scalar
from scipy.special import log_softmax
from scipy.stats import chi2

# T * scale stays in this range, scale being the RMS of the held-out logits about each
# image's mean: at 1e-3 the largest probability differs from uniform by about 1e-3 (still
# far above float32's and bf16's resolution of a softmax computed in float32); at 1e3 a
# typical logit gap becomes a probability of 1 - e^-1000, past anything float32 can show.
BOUNDS = (1e-3, 1e3)
NO_SIGNAL_LEVEL = 0.05  # the likelihood-ratio test's size: 2n(log K - loss) > chi2(1) 95 %
AT_BOUND = 1e-3  # in log T: a fitted T this close to a bound counts as on it


@dataclass(frozen=True)
class Calibration:
    temperature: float
    fallback: str | None = None  # why T = 1 was kept instead of the fit (None: fitted)


def decisions(logits: np.ndarray) -> np.ndarray:
    """The labels a model gives: the argmax of its logits (ties: the lowest class id, as
    torch and numpy break them). No temperature enters here."""
    return np.asarray(logits).argmax(axis=1)


def probabilities(logits: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(T * logits) in float64 (the served model computes the same in float32)."""
    scaled = np.asarray(logits, dtype=np.float64) * temperature
    return np.exp(log_softmax(scaled, axis=1))


def fit_temperature(scores: np.ndarray, labels: np.ndarray) -> Calibration:
    """The factor T for which softmax(T * scores) best predicts the labels, or T = 1 with
    the reason where the scores carry no signal or the fit ends on a bound."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    n, classes = scores.shape if scores.ndim == 2 else (0, 0)
    if n == 0 or classes < 2:
        return Calibration(1.0, "no held-out scores to fit a temperature on")
    centred = scores - scores.mean(axis=1, keepdims=True)
    scale = float(np.sqrt(np.mean(centred**2)))
    if not np.isfinite(scale) or scale == 0.0:
        return Calibration(1.0, "the held-out scores are all tied: no signal")
    low, high = np.log(BOUNDS[0] / scale), np.log(BOUNDS[1] / scale)

    def mean_log_loss(log_t: float) -> float:
        return -log_softmax(np.exp(log_t) * centred, axis=1)[np.arange(n), labels].mean()

    if np.array_equal(decisions(scores), labels):
        log_t = _laplace(centred, n, low, high)
    else:
        log_t = float(minimize_scalar(mean_log_loss, bounds=(low, high), method="bounded").x)
    if min(log_t - low, high - log_t) < AT_BOUND:
        side = "lower" if log_t - low < AT_BOUND else "upper"
        return Calibration(1.0, f"the fit ran into its {side} bound (T = {np.exp(log_t):.3g})")
    evidence = 2 * n * (np.log(classes) - mean_log_loss(log_t))
    if evidence < chi2.ppf(1 - NO_SIGNAL_LEVEL, df=1):
        return Calibration(
            1.0,
            f"the held-out scores show no signal ({n} images: log loss "
            f"{mean_log_loss(log_t):.3f} against chance's {np.log(classes):.3f})",
        )
    return Calibration(float(np.exp(log_t)))


def _laplace(centred: np.ndarray, n: int, low: float, high: float) -> float:
    """log T at which the mean top probability is (n + 1) / (n + 2); it grows with T."""
    target = (n + 1) / (n + 2)

    def excess(log_t: float) -> float:
        return np.exp(log_softmax(np.exp(log_t) * centred, axis=1).max(axis=1)).mean() - target

    if excess(high) < 0:
        return high
    if excess(low) > 0:
        return low
    return float(root_scalar(excess, bracket=(low, high), method="brentq").root)
