"""Refinement: gradients flow, a frozen backbone stays frozen, schedules, and bad settings."""

import logging

import numpy as np
import pytest
import torch

from src.classifiers.calibration import probabilities
from src.classifiers.callbacks import should_stop_early
from src.classifiers.dnn import Hooks, Refinement, TrainingResult, make_scheduler, train_network
from src.classifiers.network import ImageClassifier, make_head
from src.data.loader import EpochSampler
from src.data.prepare import SplitSettings, prepare_dataset
from src.data.presets import ImageSpec
from src.device import Compute
from src.errors import UserError
from src.evaluation.metrics import evaluate
from src.features.backbone import Normalize, build_featurizer
from src.modes import dnn as dnn_mode
from src.modes.job import Job, Network
from tests.conftest import EPOCH_METRICS, write_colour_dataset

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny(textures):
    data = prepare_dataset(textures, SplitSettings(0.75, 0.2), 0, None, None, 2)
    split = {s: data.subset(s) for s in ("train", "val")}
    return {s: ([f.path for f in files], data.labels(files)) for s, files in split.items()}


def network(seed: int = 0, dropout: float = 0.0) -> ImageClassifier:
    torch.manual_seed(seed)
    featurizer, _ = build_featurizer("resnet18", "none")
    return ImageClassifier(featurizer, make_head("dnn", 512, 3, dropout), l2_normalize=False)


def train(model, tiny, callbacks=(), checkpoint=None, resume=None, precision="fp32", **settings):
    options = {
        "epochs": 8,
        "lr": 0.01,
        "batch_size": 8,
        "augment": False,
        "patience": 0,
        "schedule": "step",
        **settings,
    }
    return train_network(
        model,
        tiny["train"],
        tiny["val"],
        Refinement(**options),
        ImageSpec(64, "letterbox"),
        Compute(CPU, precision, workers=0, seed=0),
        hooks=Hooks(tuple(callbacks), checkpoint, resume),
    )


def test_a_few_epochs_overfit_the_tiny_training_set(tiny):
    refined = train(network(), tiny)
    losses = [h["train/loss"] for h in refined.history]
    assert losses[-1] < 0.3 * losses[0]
    assert refined.history[-1]["train/accuracy"] >= 0.9


@pytest.mark.slow
def test_bf16_refinement_learns_the_tiny_set_as_fp32_does(tiny):
    refined = {p: train(network(), tiny, precision=p) for p in ("fp32", "bf16")}
    for run in refined.values():
        assert run.history[-1]["train/loss"] < 0.3 * run.history[0]["train/loss"]
        assert run.history[-1]["train/accuracy"] >= 0.9
    fp32, bf16 = (refined[p].history[-1] for p in ("fp32", "bf16"))
    assert fp32["train/loss"] != bf16["train/loss"]  # bf16 did run
    one_image = 1 / len(tiny["val"][1])
    assert abs(fp32["val/accuracy"] - bf16["val/accuracy"]) <= one_image + 1e-9


def test_frozen_backbone_stays_bit_identical_and_the_head_learns(tiny):
    model = network()
    before = {k: v.clone() for k, v in model.featurizer.state_dict().items()}
    head_before = model.head[1].weight.clone()
    train(model, tiny, epochs=2, freeze_backbone=True)
    after = model.featurizer.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # batch-norm statistics too
    assert not torch.equal(head_before, model.head[1].weight)


def test_a_callback_can_stop_training_and_is_named_as_the_reason(tiny):
    seen = []

    def stop_after_two(epoch, metrics):
        seen.append((epoch, sorted(metrics)))
        return epoch == 1

    refined = train(network(), tiny, callbacks=[stop_after_two])
    assert [e for e, _ in seen] == [0, 1] and len(refined.history) == 2
    assert refined.stopped_by == "stop_after_two"
    assert set(EPOCH_METRICS) <= set(seen[0][1])


@pytest.mark.parametrize(
    ("sequence", "patience", "stops_after"),
    [
        ([0.5, 0.6, 0.6, 0.55, 0.58], 3, 4),  # best at epoch 1; epochs 2, 3, 4 bring nothing
        ([0.5, 0.6, 0.7, 0.8, 0.9], 2, None),  # always improving
        ([0.9, 0.1, 0.1], 0, None),  # patience 0: never stops early
        ([0.4, 0.3, 0.5, 0.4], 1, 1),
    ],
)
def test_early_stopping_stops_at_the_expected_epoch(sequence, patience, stops_after):
    history, stopped = [], None
    for epoch, value in enumerate(sequence):
        history.append({"val/class_avg_accuracy": value})
        if should_stop_early(history, patience):
            stopped = epoch
            break
    assert stopped == stops_after


def test_the_kept_epochs_weights_are_the_ones_the_model_ends_with(tiny, monkeypatch):
    """The model comes back holding the weights it had after the epoch the selection rule
    keeps (tests/classifiers/test_epoch_selection.py tests the rule), not its last: here the
    rule is made to keep epoch 1 of 4."""
    monkeypatch.setattr(
        "src.classifiers.dnn.kept_epoch", lambda history, n: min(len(history) - 1, 1)
    )
    model = network()
    after = {}

    def snapshot(epoch, metrics):  # a trainer callback, called once each epoch is validated
        after[epoch] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    refined = train(model, tiny, callbacks=[snapshot], epochs=4)
    assert refined.best_epoch == 1
    kept = model.state_dict()
    assert all(torch.equal(kept[k], after[1][k]) for k in kept)
    assert not all(torch.equal(kept[k], after[3][k]) for k in kept)


def test_a_finished_onecycle_run_extended_by_a_resume_goes_on(tiny, tmp_path):
    from src.classifiers.checkpoint import load_checkpoint

    checkpoint = tmp_path / "last.pt"
    first = train(network(), tiny, epochs=1, schedule="onecycle", checkpoint=checkpoint)
    assert len(first.history) == 1
    state = load_checkpoint(checkpoint)
    extended = train(network(), tiny, epochs=3, schedule="onecycle", resume=state)
    assert len(extended.history) == 3  # no "Tried to step N times"
    rates = [h["lr"] for h in extended.history]
    assert rates[2] < rates[1]  # the stretched cycle anneals to its new end


def schedule_of(schedule: str, epochs: int = 50, steps: int = 2, **extra) -> list[float]:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    settings = Refinement(epochs=epochs, lr=0.1, schedule=schedule, **extra)
    scheduler = make_scheduler(optimizer, settings, steps)
    rates = []
    for _ in range(epochs * steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates[::steps]  # one per epoch


def test_step_schedule_reproduces_the_original():
    rates = schedule_of("step", milestones=[20, 40])
    assert rates[0] == rates[19] == pytest.approx(0.1)
    assert rates[20] == rates[39] == pytest.approx(0.01)
    assert rates[40] == rates[49] == pytest.approx(0.001)


def test_cosine_and_onecycle_schedules_end_near_zero():
    cosine = schedule_of("cosine", epochs=10)
    assert cosine[0] == pytest.approx(0.1) and cosine[-1] < 0.01
    onecycle = schedule_of("onecycle", epochs=10)
    assert max(onecycle) == pytest.approx(0.1, rel=0.05) and onecycle[0] < 0.01


def test_unknown_schedule_is_refused():
    with pytest.raises(UserError, match="step, cosine or onecycle"):
        schedule_of("linear")


def test_a_diverging_loss_stops_with_a_clear_message(tiny):
    with pytest.raises(UserError, match=r"loss became (nan|inf).*lower classifier.lr"):
        train(network(), tiny, lr=1e12, epochs=2)


def test_batch_size_larger_than_the_training_set_is_clamped_with_a_warning(tiny, caplog):
    with caplog.at_level(logging.WARNING):
        train(network(), tiny, epochs=1, batch_size=1000)
    assert "larger than the 15 training images; using 15" in caplog.text


def test_balanced_sampler_draws_every_class_as_often_as_the_largest():
    labels = np.array([0] * 10 + [1] * 3 + [2] * 5)
    sampler = EpochSampler(labels, balance=True, max_images=None, seed=0)
    drawn = labels[sampler.indices()]
    assert np.bincount(drawn).tolist() == [10, 10, 10]
    assert set(sampler.indices()[labels[sampler.indices()] == 0]) == set(range(10))


def test_sampler_caps_images_per_epoch_and_reshuffles_each_epoch():
    sampler = EpochSampler(np.zeros(50, int), balance=False, max_images=20, seed=0)
    first = sampler.indices()
    sampler.set_epoch(1)
    assert len(first) == 20 and len(set(first)) == 20
    assert not np.array_equal(first, sampler.indices())


def test_the_refined_network_is_calibrated_on_validation_and_serves_those_scores(tmp_path):
    """An accurate but under-confident network (a mean-colour classifier with small logits)
    leaves the dnn mode's `fit` with validation ECE at most 0.05, its decisions unchanged, and the
    model itself carries the temperature of the calibrated scores (what is served)."""
    root = write_colour_dataset(tmp_path / "colours", 60)
    data = prepare_dataset(root, SplitSettings(0.75, 0.2), 0, None, None, 2)
    files = {s: data.subset(s) for s in ("train", "val", "test")}
    job = Job(
        files, {s: data.labels(f) for s, f in files.items()}, 3, ImageSpec(32), Compute(CPU), 8, 0
    )
    mean_colour = torch.nn.Sequential(
        Normalize(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    )
    head = make_head("dnn", 3, 3)
    with torch.no_grad():  # data.classes is blue, green, red: the channels backwards
        head[1].weight.copy_(0.2 * (torch.eye(3).flip(1) - 1 / 3))
        head[1].bias.zero_()
    model = ImageClassifier(mean_colour, head, l2_normalize=False)
    raw = job.outputs(model, job.paths("val"), "scoring")
    fitted = dnn_mode.fit(job, Network(model, TrainingResult([], 0, None)), None)
    before = evaluate(job.labels["val"], torch.softmax(torch.from_numpy(raw), 1), data.classes)
    calibrated = probabilities(fitted.logits["val"], fitted.calibration.temperature)
    after = evaluate(job.labels["val"], calibrated, data.classes)
    assert after["accuracy"] == before["accuracy"] > 0.9  # the same decisions
    assert after["ece"] <= 0.05 < before["ece"]
    served = job.outputs(fitted.model, job.paths("val"), "scoring")
    assert np.array_equal(served, fitted.logits["val"])  # the logits, as the model gives them
    assert fitted.model.temperature == fitted.calibration.temperature > 1
    served_scores = fitted.model.probabilities(torch.from_numpy(served)).numpy()
    assert np.allclose(served_scores, calibrated, atol=1e-6)
