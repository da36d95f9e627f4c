"""What the refining modes share: the backbone with a new dropout → linear head, trained
(src/classifiers/dnn.py), before the mode fits on the result. Under torchrun (`ranks`)
every process refines; rank 0 alone goes on to score and fit.

With `refit` (the default for dnn), validation chooses the epoch count and the served
network is then trained again, from the same starting weights, on train + validation for
that many epochs: on 150 images, holding 30 out of the final training cost more than the
choice of epoch gained (README, "Refining the network")."""

import copy
import dataclasses
import logging

import numpy as np
from torch import nn

from src.classifiers.dnn import NO_HOOKS, Hooks, retrain, train_network
from src.classifiers.network import ImageClassifier, make_head
from src.modes.job import Job, Network

log = logging.getLogger(__name__)


def train_with_new_head(
    job: Job, featurizer: nn.Module, settings, feature_size: int, *, hooks: Hooks = NO_HOOKS
) -> Network:
    """`settings`: the mode's (ModeSettings: its refinement and the head's dropout);
    `feature_size`: the length of the featurizer's pooled features."""
    head = make_head("dnn", feature_size, job.num_classes, settings.dropout)
    model = ImageClassifier(featurizer, head, l2_normalize=False)
    start = copy.deepcopy(model) if settings.refinement.refit else None
    train, val = ((job.paths(s), job.labels[s]) for s in ("train", "val"))
    result = train_network(
        model, train, val, settings.refinement, job.image, job.compute, hooks=hooks
    )
    if start is None or not result.history:
        return Network(model, result)
    epochs = result.best_epoch + 1
    both = (train[0] + val[0], np.concatenate([train[1], val[1]]))
    log.info(
        f"retraining on train + validation ({len(both[0])} images) for {epochs} epochs, "
        f"the count validation chose"
    )
    again = dataclasses.replace(settings.refinement, epochs=epochs, patience=0)
    history = retrain(start, both, again, job.image, job.compute, hooks.ranks)
    return Network(start, result, held_out=model, refit=history)
