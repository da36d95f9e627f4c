"""Scores that mean what they say: one temperature T turns margins or logits into
probabilities, softmax(T * scores), without changing any decision.

T is fitted by the lowest log loss on held-out scores (temperature scaling, Guo et al.
2017, the usual fix for networks; for the SVM on out-of-fold margins, see svm.py). There is
no cap on T: the old one, e^6, left easy data scored 0.67 where it was right 99 % of the
time. Where every held-out score picks the right class the log loss has no minimum (it
falls as T grows); then T is set so that the mean top probability is (n + 1) / (n + 2),
the accuracy that n right out of n supports (Laplace's rule).
"""

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from torch import nn

LOG_T_BOUNDS = (-25.0, 25.0)  # search range of log T: wide enough never to bind (T = e^25
# would turn margins of 1e-10 into certainty; a perfect fit has its own rule)


def fit_temperature(scores: np.ndarray, labels: np.ndarray) -> float:
    """The factor T for which softmax(T * scores) best predicts the labels: the lowest log
    loss or, when every score is right already, mean top probability (n + 1) / (n + 2)."""
    n = len(labels)
    if n and np.array_equal(scores.argmax(axis=1), labels):
        target = (n + 1) / (n + 2)
        low, high = LOG_T_BOUNDS
        for _ in range(100):  # the mean top probability grows with T: bisect on log T
            middle = (low + high) / 2
            top = np.exp(log_softmax(np.exp(middle) * scores, axis=1).max(axis=1)).mean()
            low, high = (middle, high) if top < target else (low, middle)
        return float(np.exp((low + high) / 2))

    def log_loss(log_t: float) -> float:
        log_probs = log_softmax(np.exp(log_t) * scores, axis=1)
        return -log_probs[np.arange(n), labels].mean()

    result = minimize_scalar(log_loss, bounds=LOG_T_BOUNDS, method="bounded")
    return float(np.exp(result.x))


def scale_linear(layer: nn.Linear, temperature: float) -> None:
    """Build the temperature into a final linear layer: it then outputs T * logits."""
    with torch.no_grad():
        layer.weight.mul_(temperature)
        layer.bias.mul_(temperature)
