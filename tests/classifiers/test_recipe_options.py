"""The refinement recipe's options: discriminative rates, AdamW, warm-up, label smoothing
and the weights' moving average, each doing what conf/classifier/dnn.yaml says."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from src.classifiers.checkpoint import load_checkpoint
from src.classifiers.dnn import Refinement, make_optimizer, small_last_batch
from src.errors import UserError
from tests.classifiers.test_dnn import network, schedule_of, tiny, train  # noqa: F401


def test_the_backbone_learns_at_its_share_of_the_heads_rate():
    model = network()
    optimizer = make_optimizer(model, Refinement(lr=0.01, backbone_lr=0.1))
    head, backbone = optimizer.param_groups
    assert head["lr"] == pytest.approx(0.01) and backbone["lr"] == pytest.approx(0.001)
    assert {id(p) for p in head["params"]} == {id(p) for p in model.head.parameters()}
    assert len(backbone["params"]) == len(list(model.featurizer.parameters()))


def test_adamw_is_an_option_and_a_frozen_backbone_has_no_group():
    model = network()
    optimizer = make_optimizer(model, Refinement(optimizer="adamw", freeze_backbone=True))
    assert isinstance(optimizer, torch.optim.AdamW) and len(optimizer.param_groups) == 1
    with pytest.raises(UserError, match="sgd or adamw"):
        make_optimizer(network(), Refinement(optimizer="lamb"))


def test_the_warm_up_rises_linearly_then_follows_the_schedule():
    warm = schedule_of("cosine", epochs=10, steps=2, warmup_epochs=2)
    plain = schedule_of("cosine", epochs=10, steps=2)
    assert warm[0] == pytest.approx(plain[0] / 4)  # step 1 of 4 warm-up steps
    assert warm[1] == pytest.approx(plain[1] * 3 / 4)
    assert warm[2:] == pytest.approx(plain[2:])


def test_label_smoothing_changes_the_loss_not_the_data(tiny):  # noqa: F811
    plain = train(network(), tiny, epochs=1)
    smoothed = train(network(), tiny, epochs=1, label_smoothing=0.3)
    assert smoothed.history[0]["train/loss"] != plain.history[0]["train/loss"]
    assert smoothed.history[0]["train/accuracy"] == plain.history[0]["train/accuracy"]


def test_the_moving_average_is_what_validation_scores_and_a_resume_goes_on_from(
    tiny,  # noqa: F811
    tmp_path,
):
    """With `ema`, the model ends holding the averaged weights, and a run resumed from its
    checkpoint ends where an uninterrupted one ends (the average is in the checkpoint)."""
    straight_model = network()
    straight = train(straight_model, tiny, epochs=3, ema=0.5, schedule="step")
    interrupted = network()
    train(interrupted, tiny, epochs=2, ema=0.5, schedule="step", checkpoint=tmp_path / "c.pt")
    resumed_model = network()
    state = load_checkpoint(tmp_path / "c.pt")
    assert state["ema"] is not None
    resumed = train(resumed_model, tiny, epochs=3, ema=0.5, schedule="step", resume=state)
    assert len(resumed.history) == len(straight.history) == 3
    a, b = straight_model.state_dict(), resumed_model.state_dict()
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-5), key
    no_average = network()
    train(no_average, tiny, epochs=3, schedule="step")
    assert not all(torch.equal(a[k], no_average.state_dict()[k]) for k in a)


@given(images=st.integers(1, 500), batch=st.integers(1, 64))
def test_no_epoch_trains_on_a_batch_of_less_than_half_the_batch_size(images, batch):
    """Batch norm on a batch of 2 at a 1x1 feature map sent logits to 1e12 (the noise
    acceptance test caught it once retraining on train + validation made 18 images)."""
    batch = min(batch, images)  # as training clamps it
    sizes = [batch] * (images // batch)
    if images % batch and not small_last_batch(images, batch):
        sizes.append(images % batch)
    assert sizes and all(s >= batch / 2 for s in sizes) and max(sizes) == batch
    assert sum(sizes) >= images - batch / 2  # at most half a batch left out of an epoch
