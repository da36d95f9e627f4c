"""What the refining modes share: the backbone with a new dropout → linear head, refined
(src/classifiers/dnn.py), before the mode fits on the result. Under torchrun (`ranks`)
every process refines; rank 0 alone goes on to score and fit."""

from pathlib import Path

from torch import nn

from src.classifiers.distributed import SINGLE, Ranks
from src.classifiers.dnn import refine
from src.classifiers.network import ImageClassifier, make_head
from src.modes.job import Job, Network


def refine_network(
    job: Job,
    featurizer: nn.Module,
    settings,
    feature_size: int,
    *,
    callbacks: tuple = (),
    checkpoint: Path | None = None,
    resume: dict | None = None,
    ranks: Ranks = SINGLE,
) -> Network:
    """`settings`: the mode's (ModeSettings: its refinement and the head's dropout);
    `feature_size`: the length of the featurizer's pooled features."""
    head = make_head("dnn", feature_size, job.num_classes, settings.dropout)
    model = ImageClassifier(featurizer, head, l2_normalize=False)
    refined = refine(
        model,
        (job.paths("train"), job.labels["train"]),
        (job.paths("val"), job.labels["val"]),
        settings.refinement,
        job.size,
        job.preprocessing,
        job.device,
        job.workers,
        job.seed,
        list(callbacks),
        checkpoint,
        resume,
        ranks,
        job.precision,
    )
    return Network(model, refined)
