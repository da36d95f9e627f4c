"""Calibration: the temperature makes scores honest and never changes a decision, also
where held-out scores carry no signal, logits tie, or the model computes in bf16."""

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import balanced_accuracy_score
from torch import nn

from src.classifiers.calibration import BOUNDS, decisions, fit_temperature, probabilities
from src.classifiers.network import ImageClassifier
from src.classifiers.selection import class_avg_accuracy
from src.deployment.served_model import ImageClassifierModel

SIDE = 2  # pixels per side of the tiny images the served path below scores


class RawPixels(nn.Module):
    """A 'featurizer' whose features are the pixels themselves."""

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels.float().flatten(1)


def served(head: nn.Linear, temperature: float, precision: str) -> ImageClassifierModel:
    """The served model's real predict path around a linear 'network' on raw pixels."""
    model = ImageClassifier(RawPixels(), head, l2_normalize=False).eval()
    model.temperature = temperature
    wrapper = ImageClassifierModel()
    wrapper.model, wrapper.device, wrapper.precision = model, torch.device("cpu"), precision
    wrapper.classes = [f"c{k}" for k in range(head.out_features)]
    return wrapper


def logits_and_labels(min_classes=2, max_classes=5):
    """Held-out logits of any scale (ties, constant rows, huge and tiny values) and labels
    that may or may not follow them."""
    return st.integers(min_classes, max_classes).flatmap(
        lambda k: st.integers(1, 40).flatmap(
            lambda n: st.tuples(
                arrays(
                    np.float64,
                    (n, k),
                    elements=st.one_of(
                        st.sampled_from([0.0, 1.0, -1.0]),
                        st.floats(-1e6, 1e6, allow_nan=False),
                        st.floats(-1e-6, 1e-6, allow_nan=False, allow_subnormal=False),
                    ),
                ),
                arrays(np.int64, (n,), elements=st.integers(0, k - 1)),
            )
        )
    )


@settings(max_examples=60, deadline=None)
@given(
    data=logits_and_labels(), precision=st.sampled_from(["fp32", "bf16"]), seed=st.integers(0, 99)
)
def test_calibration_never_changes_a_served_decision(data, precision, seed):
    """Fit T on any held-out scores; the served model with that T labels every image as
    the same network with T = 1 does, in fp32 and bf16 (T was built into the last layer
    once, and a T of e^-25 labelled everything class 0)."""
    held_out, labels = data
    calibration = fit_temperature(held_out, labels)
    classes = held_out.shape[1]
    generator = torch.Generator().manual_seed(seed)
    head = nn.Linear(3 * SIDE * SIDE, classes)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=generator) * 1e-3)
        head.bias.copy_(torch.from_numpy(held_out[0]).float())  # ties where the row ties
    pixels = torch.randint(0, 256, (16, SIDE, SIDE, 3), generator=generator, dtype=torch.uint8)
    plain, _ = served(head, 1.0, precision).predict_pixels(pixels.numpy())
    labels_served, scores = served(head, calibration.temperature, precision).predict_pixels(
        pixels.numpy()
    )
    assert np.array_equal(labels_served, plain)
    assert np.isfinite(scores).all() and np.allclose(scores.sum(1), 1, atol=1e-5)


@settings(max_examples=80, deadline=None)
@given(data=logits_and_labels())
def test_a_fitted_temperature_stays_inside_its_bounds_or_falls_back_to_one(data):
    held_out, labels = data
    calibration = fit_temperature(held_out, labels)
    if calibration.fallback:
        assert calibration.temperature == 1.0
        return
    centred = held_out - held_out.mean(1, keepdims=True)
    scale = np.sqrt(np.mean(centred**2))
    assert BOUNDS[0] < calibration.temperature * scale < BOUNDS[1]
    # and the float32 scores still tell apart the rows' top classes that are well apart
    top2 = np.sort(held_out, axis=1)[:, -2:]
    apart = (top2[:, 1] - top2[:, 0]) > 1e-2 * scale
    scores = torch.softmax(torch.from_numpy(centred * calibration.temperature).float(), 1)
    assert np.array_equal(scores.numpy().argmax(1)[apart], decisions(held_out)[apart])


def test_no_signal_keeps_temperature_one_and_says_why():
    """The issue's case: held-out logits that do not predict the labels. The lowest log
    loss is at T -> 0, where the old fit went to e^-25."""
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 1, (30, 3))
    labels = rng.integers(0, 3, 30)
    calibration = fit_temperature(logits, labels)
    assert calibration.temperature == 1.0
    assert "no signal" in calibration.fallback or "bound" in calibration.fallback
    scores = probabilities(logits, calibration.temperature)
    assert np.array_equal(scores.argmax(1), decisions(logits))
    assert len(np.unique(scores.round(6), axis=0)) == 30  # no two images scored alike


@pytest.mark.parametrize("rows", [0, 1])
def test_too_few_held_out_scores_fall_back(rows):
    logits, labels = np.ones((rows, 3)), np.zeros(rows, int)
    calibration = fit_temperature(logits, labels)
    assert calibration.temperature == 1.0 and calibration.fallback


def test_tied_held_out_scores_are_no_signal():
    calibration = fit_temperature(np.zeros((10, 3)), np.arange(10) % 3)
    assert calibration.temperature == 1.0 and "tied" in calibration.fallback


def test_learnable_scores_get_a_fitted_temperature():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 200)
    logits = rng.normal(0, 1, (200, 3)) + 2.0 * np.eye(3)[labels]  # informative, noisy
    calibration = fit_temperature(logits * 0.01, labels)  # too flat: T must grow
    assert calibration.fallback is None and calibration.temperature > 10


def test_a_perfect_fit_gets_a_finite_temperature_at_laplaces_confidence():
    scores = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 1.0], [0.5, 1.5]] * 3)  # all right
    calibration = fit_temperature(scores, np.array([0, 1, 0, 1] * 3))
    top = probabilities(scores, calibration.temperature).max(1).mean()
    assert calibration.fallback is None
    assert top == pytest.approx(13 / 14, abs=1e-6)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(2, 6).flatmap(
        lambda k: st.integers(1, 50).flatmap(
            lambda n: st.tuples(
                st.just(k),
                arrays(np.int64, (n,), elements=st.integers(0, k - 1)),
                arrays(np.int64, (n,), elements=st.integers(0, k - 1)),
            )
        )
    )
)
def test_class_averaged_accuracy_is_balanced_accuracy(data):
    """Mean per-class recall over the classes present, by hand and by scikit-learn."""
    classes, truth, predicted = data
    by_hand = np.mean([np.mean(predicted[truth == k] == k) for k in np.unique(truth)])
    ours = class_avg_accuracy(truth, predicted, classes)
    assert ours == pytest.approx(by_hand, abs=1e-12)
    with warnings.catch_warnings():  # "y_pred contains classes not in y_true"
        warnings.simplefilter("ignore")
        assert ours == pytest.approx(balanced_accuracy_score(truth, predicted), abs=1e-12)
