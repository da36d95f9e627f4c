"""The linear SVM: C chosen on validation only, and exported as an equivalent linear layer."""

import numpy as np
import pytest
import torch

from src.classifiers.calibration import BOUNDS, decisions, probabilities
from src.classifiers.svm import (
    decision_scores,
    fit_svm,
    fit_svm_classifier,
    select_C,
    svm_as_linear,
    train_svm_head,
)
from src.evaluation.metrics import evaluate


def blobs(n_per_class: int, classes: int, spread: float, seed: int, dim: int = 10):
    rng = np.random.default_rng(seed)
    centres = np.eye(classes, dim) * 3
    x = np.concatenate([c + rng.normal(0, spread, (n_per_class, dim)) for c in centres])
    return x.astype(np.float32), np.repeat(np.arange(classes), n_per_class)


def test_C_is_chosen_by_validation_accuracy():
    train_x, train_y = blobs(30, 3, 1.0, seed=0)
    val_x, val_y = blobs(20, 3, 1.0, seed=1)
    C, scores = select_C(train_x, train_y, val_x, val_y, [1e-4, 1e-2, 1, 100], seed=0)
    assert len(scores) == 4 and scores[[1e-4, 1e-2, 1, 100].index(C)] == max(scores)


def test_ties_go_to_the_smaller_C():
    train_x, train_y = blobs(30, 2, 0.1, seed=0)  # so easy that every C is perfect
    val_x, val_y = blobs(10, 2, 0.1, seed=1)
    C, scores = select_C(train_x, train_y, val_x, val_y, [10, 0.1, 1], seed=0)
    assert scores == [1.0, 1.0, 1.0] and C == 0.1


def test_C_selection_never_sees_the_test_split():
    """The mode is handed every split. Two test splits that would pick different C values,
    the validation split itself and the same images with every label moved to another
    class, leave the chosen C, its validation scores and the head exactly as they were.
    (The old test called train_svm_head, which takes no test split: it could not fail.)"""
    features, labels = {}, {}
    for split, seed in (("train", 0), ("val", 1)):
        features[split], labels[split] = blobs(20, 3, 2.0, seed=seed)
    C_values = [1e-4, 1e-2, 1, 100]
    _, on_val, _ = select_and_fit(features, labels, C_values)
    assert len(set(on_val.val_scores)) > 1  # C matters here, so a leak would show
    fits = []
    for test_labels in (labels["val"], (labels["val"] + 1) % 3):
        features["test"], labels["test"] = features["val"], test_labels
        best_on_test, _ = select_C(
            features["train"], labels["train"], features["test"], labels["test"], C_values, 0
        )
        fits.append((best_on_test, select_and_fit(features, labels, C_values)[1]))
    assert fits[0][0] != fits[1][0]  # choosing on test would pick two different C values
    for _, fit in fits:
        assert fit.C == on_val.C and fit.val_scores == on_val.val_scores
        assert torch.equal(fit.head.weight, on_val.head.weight)


def select_and_fit(features, labels, C_values):
    return fit_svm_classifier(torch.nn.Identity(), features, labels, 3, C_values, True, 0)


def test_the_test_split_changes_nothing_that_is_fitted():
    """The mode sees every split's features; the test split's may not move the head."""
    from src.classifiers.svm import fit_svm_classifier

    features, labels = {}, {}
    for split, seed in (("train", 0), ("val", 1), ("test", 2)):
        features[split], labels[split] = blobs(20, 3, 1.5, seed=seed)
    heads = []
    for test_seed in (2, 3):  # other test images, other test labels
        features["test"], labels["test"] = blobs(20, 3, 1.5, seed=test_seed)
        labels["test"] = np.random.default_rng(test_seed).permutation(labels["test"])
        _, fit, _ = fit_svm_classifier(
            torch.nn.Identity(), features, labels, 3, [1e-2, 1, 100], True, 0
        )
        heads.append((fit.C, fit.head.weight.detach().clone(), fit.head.bias.detach().clone()))
    assert heads[0][0] == heads[1][0]
    assert torch.equal(heads[0][1], heads[1][1]) and torch.equal(heads[0][2], heads[1][2])


def direction(weight) -> np.ndarray:
    w = np.asarray(weight, dtype=np.float64).ravel()
    return w / np.linalg.norm(w)


def test_the_final_svm_is_refit_on_train_and_validation_with_the_chosen_C():
    train_x, train_y = blobs(30, 2, 1.0, seed=0)
    val_x, val_y = blobs(30, 2, 1.0, seed=5)
    val_x = val_x + np.linspace(-1.5, 1.5, val_x.shape[1])  # validation shifted: the refit moves
    fit = train_svm_head(train_x, train_y, val_x, val_y, [0.01, 1], 2, seed=0)
    both = fit_svm(np.concatenate([train_x, val_x]), np.concatenate([train_y, val_y]), fit.C, 0)
    alone = fit_svm(train_x, train_y, fit.C, 0)
    head = direction(fit.head.weight.detach().numpy()[1] - fit.head.weight.detach().numpy()[0])
    assert np.dot(head, direction(both.coef_)) > 0.9999
    assert np.dot(head, direction(alone.coef_)) < 0.999  # not the train-only fit


@pytest.mark.parametrize("classes", [2, 4])
def test_linear_layer_reproduces_the_svm_decisions(classes):
    x, y = blobs(25, classes, 1.2, seed=2)
    svm = fit_svm(x, y, C=1.0, seed=0)
    layer = svm_as_linear(svm, classes)
    with torch.no_grad():
        logits = layer(torch.from_numpy(x)).numpy()
    margins = decision_scores(svm, x, classes)  # less their mean: the same softmax
    assert np.allclose(logits, margins - margins.mean(1, keepdims=True), atol=1e-5)
    assert np.array_equal(logits.argmax(1), svm.predict(x))


def test_a_large_temperature_keeps_the_served_scores_exact_in_float32():
    """Calibrated on tiny margins, T reaches 10^4 to 10^6: the scaled logits must not turn
    the margins' shared offset into scores whose float32 rounding shows (or into the ONNX
    export's parity check, 1e-4)."""
    features, labels = {}, {}
    for split, seed, n in (("train", 0, 40), ("val", 1, 15), ("test", 2, 100)):
        features[split], labels[split] = pooled_like(n, seed, 0.04)
    C_values = [0.0001, 0.001, 0.01, 0.1, 1, 10, 100]
    model, fit, _ = fit_svm_classifier(torch.nn.Identity(), features, labels, 3, C_values, True, 0)
    assert fit.temperature > 1e4 and model.temperature == fit.temperature
    x = features["test"] / np.linalg.norm(features["test"], axis=1, keepdims=True)
    weight, bias = (p.detach().double().numpy() for p in (fit.head.weight, fit.head.bias))
    exact = (x.astype(np.float64) @ weight.T + bias) * fit.temperature
    with torch.no_grad():
        served = fit.head(torch.from_numpy(x).float()).numpy() * np.float32(fit.temperature)
    assert np.abs(served - exact).max() < 1e-4


def test_the_served_svm_decides_as_the_refit_svm_itself():
    """Through the whole classifier, calibrated: the labels are scikit-learn's own
    predictions of the refit SVM (not the layer's margins compared with a multiple of
    themselves), and the calibrated scores' argmax agrees."""
    features, labels = {}, {}
    for split, seed in (("train", 3), ("val", 4), ("test", 5)):
        features[split], labels[split] = blobs(40, 3, 1.6, seed=seed)
    model, fit, logits = fit_svm_classifier(
        torch.nn.Identity(), features, labels, 3, [0.01, 1], False, 0
    )
    refit = fit_svm(
        np.concatenate([features["train"], features["val"]]),
        np.concatenate([labels["train"], labels["val"]]),
        fit.C,
        0,
    )
    assert fit.calibration.fallback is None and fit.temperature > 1
    with torch.no_grad():
        served = model(torch.from_numpy(features["test"]))
        scores = model.probabilities(served).numpy()
    assert np.array_equal(decisions(logits["test"]), refit.predict(features["test"]))
    assert np.array_equal(served.numpy().argmax(1), refit.predict(features["test"]))
    assert np.array_equal(scores.argmax(1), refit.predict(features["test"]))


def pooled_like(n_per_class: int, seed: int, signal: float, classes: int = 3, dim: int = 128):
    """Like a pretrained backbone's pooled features: non-negative, a large component that
    every image shares and a small one per class. L2-normalised, their SVM margins are
    tiny (1e-4), which is where a capped temperature left the scores at about 1/classes."""
    shared = np.random.default_rng(98).gamma(2.0, 0.5, dim)
    per_class = np.random.default_rng(99).normal(0, 1, (classes, dim))
    y = np.repeat(np.arange(classes), n_per_class)
    x = shared + signal * per_class[y] + np.random.default_rng(seed).normal(0, 0.1, (len(y), dim))
    return np.maximum(x, 0).astype(np.float32), y


@pytest.mark.parametrize(
    ("signal", "train", "val"),
    [(0.04, 40, 15), (0.03, 100, 100), (0.025, 100, 100)],
    ids=["easy-small", "easy", "harder"],
)
def test_svm_scores_are_calibrated_where_it_is_accurate(signal, train, val):
    """The issue's target: validation ECE at most 0.05 wherever accuracy is above 0.9."""
    features, labels = {}, {}
    for split, seed, n in (("train", 0, train), ("val", 1, val), ("test", 2, 100)):
        features[split], labels[split] = pooled_like(n, seed, signal)
    C_values = [0.0001, 0.001, 0.01, 0.1, 1, 10, 100]  # conf/classifier/svm.yaml
    _, fit, logits = fit_svm_classifier(
        torch.nn.Identity(), features, labels, 3, C_values, True, seed=0
    )
    assert fit.calibration.fallback is None  # fitted: no bound binds, the scores carry signal
    scale = np.sqrt(np.mean((logits["val"] - logits["val"].mean(1, keepdims=True)) ** 2))
    assert BOUNDS[0] < fit.temperature * scale < BOUNDS[1]
    for split in ("val", "test"):
        report = evaluate(labels[split], probabilities(logits[split], fit.temperature), "abc")
        assert report["accuracy"] > 0.9
        assert report["ece"] <= 0.05, (split, report["ece"], fit.temperature)
