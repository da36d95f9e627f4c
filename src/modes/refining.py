"""What the refining modes share: the backbone with a new dropout → linear head, trained
(src/classifiers/dnn.py), before the mode fits on the result. Under torchrun (`ranks`)
every process refines; rank 0 alone goes on to score and fit."""

from torch import nn

from src.classifiers.dnn import NO_HOOKS, Hooks, train_network
from src.classifiers.network import ImageClassifier, make_head
from src.modes.job import Job, Network


def train_with_new_head(
    job: Job, featurizer: nn.Module, settings, feature_size: int, *, hooks: Hooks = NO_HOOKS
) -> Network:
    """`settings`: the mode's (ModeSettings: its refinement and the head's dropout);
    `feature_size`: the length of the featurizer's pooled features."""
    head = make_head("dnn", feature_size, job.num_classes, settings.dropout)
    model = ImageClassifier(featurizer, head, l2_normalize=False)
    train, val = ((job.paths(s), job.labels[s]) for s in ("train", "val"))
    result = train_network(
        model, train, val, settings.refinement, job.image, job.compute, hooks=hooks
    )
    return Network(model, result)
