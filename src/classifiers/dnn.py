"""Refining the whole network (the original workflow's Part 2): SGD on a new head.

`refine` is the training loop: one epoch of augmented training, then validation with the
plain letterbox, then a checkpoint, then the callbacks. The weights of the best epoch (by
validation class-averaged accuracy) are the ones it leaves in the model. Under torchrun the
same loop runs in every process (src/classifiers/distributed.py): `ranks` shards the data,
wraps the model for DistributedDataParallel and sums the epoch's counts; in one process it
changes nothing.
"""

import copy
import logging
import math
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from src.classifiers.callbacks import (
    MONITOR,
    Callback,
    best_epoch,
    callback_name,
    should_stop_early,
)
from src.classifiers.checkpoint import restore_rng_state, save_checkpoint
from src.classifiers.distributed import SINGLE, Ranks
from src.classifiers.network import ImageClassifier
from src.classifiers.selection import class_avg_accuracy
from src.data.loader import EpochSampler, ImageDataset, SeededItems, make_loader
from src.data.presets import augment, load_pixels
from src.errors import UserError
from src.features.featurize import featurize_batches, image_files
from src.precision import autocast, needs_grad_scaler

log = logging.getLogger(__name__)


@dataclass
class Refinement:
    """How to train; see conf/classifier/dnn.yaml for what each value means."""

    epochs: int = 15
    lr: float = 0.005
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 16
    schedule: str = "cosine"  # step | cosine | onecycle
    milestones: list[int] = field(default_factory=lambda: [20, 40])
    patience: int = 5
    freeze_backbone: bool = False
    balance_classes: bool = False
    max_train_images: int | None = None
    augment: bool = True
    crop: float = 0.9
    jitter: float = 0.2
    hflip: bool = False
    compile: bool = False
    sync_batchnorm: bool = False  # under torchrun on GPUs: batch statistics over all processes


@dataclass
class Refined:
    history: list[dict[str, float]]  # one dict of metrics per epoch run, resumed ones included
    best_epoch: int
    stopped_by: str | None  # "early_stopping", a callback's name, or None (ran all epochs)


def refine(
    model: ImageClassifier,
    train: tuple[list[Path], np.ndarray],
    val: tuple[list[Path], np.ndarray],
    settings: Refinement,
    size: int,
    preprocessing: str,
    device: torch.device,
    workers: int,
    seed: int,
    callbacks: list[Callback] = (),
    checkpoint: Path | None = None,
    resume: dict | None = None,
    ranks: Ranks = SINGLE,
    precision: str = "fp32",
) -> Refined:
    """Train `model` in place; it ends holding the best epoch's weights. `precision`: what
    the forward passes compute in (src/precision.py); weights and the loss stay fp32."""
    train_paths, train_labels = train
    batch_size = ranks.batch_share(
        _clamp_batch_size(settings.batch_size, len(train_paths), ranks.world_size)
    )
    model = model.to(device).to(memory_format=torch.channels_last)
    if settings.freeze_backbone:
        for parameter in model.featurizer.parameters():
            parameter.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(
        trainable, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay
    )
    sampler = EpochSampler(
        train_labels,
        settings.balance_classes,
        settings.max_train_images,
        seed,
        ranks.rank,
        ranks.world_size,
    )
    steps_per_epoch = len(sampler) // batch_size + (
        len(sampler) % batch_size > 0 and not lone_last_batch(len(sampler), batch_size)
    )
    scheduler = make_scheduler(optimizer, settings, steps_per_epoch)
    half = autocast(device, precision)
    # fp16 needs its gradients scaled to stay representable; bf16 and fp32 do not
    scaler = torch.amp.GradScaler(device.type, enabled=needs_grad_scaler(precision))

    history, best_state, start = [], None, 0
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        load_schedule(scheduler, resume["scheduler"])
        scaler.load_state_dict(resume["scaler"])
        restore_rng_state(resume["rng"])
        history, best_state, start = resume["history"], resume["best_model"], resume["epoch"] + 1
    # `model` stays the plain module: validation, checkpoints and the logged model use it
    step = ranks.wrap(model, device, settings.sync_batchnorm)
    step = torch.compile(step) if settings.compile else step

    items, train_loader, val_loader = epoch_loaders(
        train, val, sampler, settings, size, preprocessing, batch_size, device, workers, seed, ranks
    )
    # a run that had stopped early before it was interrupted stays stopped when resumed
    stopped_by = (
        "early_stopping" if history and should_stop_early(history, settings.patience) else None
    )
    remaining = range(start, settings.epochs) if stopped_by is None else ()
    frozen = model.featurizer if settings.freeze_backbone else None
    for epoch in remaining:
        # dropout: fixed per epoch (and process: each draws its own)
        torch.manual_seed((seed * 1_000_003 + epoch) * ranks.world_size + ranks.rank)
        items.set_epoch(epoch)
        started = time.perf_counter()
        loss_sum, correct, seen = ranks.sum(
            *train_one_epoch(
                step, frozen, train_loader, optimizer, scheduler, scaler, half, device, epoch
            )
        )
        training_seconds = time.perf_counter() - started
        val_metrics = validate(model, val_loader, val[1], device, ranks, precision)
        seconds = time.perf_counter() - started
        metrics = {
            "train/loss": loss_sum / max(seen, 1),
            "train/accuracy": correct / max(seen, 1),
            **val_metrics,
            "lr": optimizer.param_groups[0]["lr"],
            "time/epoch_seconds": seconds,
            "time/train_images_per_second": seen / training_seconds,
        }
        history.append(metrics)
        log.info(
            f"epoch {epoch}: train loss {metrics['train/loss']:.3f}, accuracy "
            f"{metrics['train/accuracy']:.3f} | val accuracy {metrics['val/accuracy']:.3f}, "
            f"class-avg {metrics[MONITOR]:.3f} | {seconds:.1f} s, "
            f"{metrics['time/train_images_per_second']:.0f} img/s"
        )
        if best_epoch(history) == epoch:
            best_state = copy.deepcopy({k: v.cpu() for k, v in model.state_dict().items()})
        if checkpoint is not None:
            save_checkpoint(
                checkpoint,
                {
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "history": history,
                    "best_model": best_state,
                },
            )
        for callback in callbacks:
            if callback(epoch, metrics):
                stopped_by = stopped_by or callback_name(callback)
        if stopped_by is None and should_stop_early(history, settings.patience):
            stopped_by = "early_stopping"
        stopped_by = ranks.broadcast(stopped_by)  # rank 0's callbacks decide for all
        if stopped_by:
            log.info(f"stopped after epoch {epoch} ({stopped_by})")
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return Refined(history, best_epoch(history) if history else -1, stopped_by)


def train_one_epoch(model, frozen, loader, optimizer, scheduler, scaler, half, device, epoch):
    """One pass over `loader`; returns (sum of losses, correct predictions, images seen).
    `frozen`: a part of the model that stays in eval mode (a frozen backbone)."""
    model.train()
    if frozen is not None:
        frozen.eval()  # frozen batch-norm statistics stay as they were
    total_loss, correct, seen = 0.0, 0, 0
    progress = tqdm(loader, desc=f"epoch {epoch}", unit="batch", leave=False)
    for pixels, labels, index in progress:
        keep, weight = index >= 0, 1.0  # drop images that failed to decode
        if not keep.any():
            if not torch.distributed.is_initialized():
                continue
            # every process must take part in each step: one blank image, weighted 0
            keep[0], labels[0], weight = True, 0, 0.0
        pixels = pixels[keep].to(device, non_blocking=True)
        labels = labels[keep].to(device, non_blocking=True)
        with half:
            logits = model(pixels)
            loss = F.cross_entropy(logits.float(), labels) * weight
        if not torch.isfinite(loss):
            raise UserError(
                f"the training loss became {loss.item()} in epoch {epoch} at learning rate "
                f"{optimizer.param_groups[0]['lr']:g}; lower classifier.lr"
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        if weight:
            total_loss += loss.item() * len(labels)
            correct += (logits.argmax(1) == labels).sum().item()
            seen += len(labels)
        progress.set_postfix(loss=f"{total_loss / max(seen, 1):.3f}")
    return total_loss, correct, seen


def epoch_loaders(
    train, val, sampler, settings, size, preprocessing, batch_size, device, workers, seed, ranks
):
    """The training and validation loaders, made once: their worker processes live across
    epochs. Returns also what to call `set_epoch` on before each epoch. Under torchrun each
    process validates its share of the validation set."""
    if settings.augment:
        transform = partial(
            augment, size=size, crop=settings.crop, jitter=settings.jitter, hflip=settings.hflip
        )
        items = SeededItems(sampler, seed)  # each image's augmentation seeded by its own key
    else:
        transform, items = partial(load_pixels, size=size, mode=preprocessing), sampler
    train_set = ImageDataset(train[0], list(train[1]), transform, size)
    train_loader = make_loader(
        train_set,
        batch_size,
        workers,
        device,
        sampler=items,
        seed=seed,
        persistent=True,
        drop_last=lone_last_batch(len(sampler), batch_size),
    )
    val_set = image_files(ranks.shard(val[0]), size, preprocessing)
    val_loader = make_loader(val_set, batch_size, workers, device, persistent=True)
    return items, train_loader, val_loader


def validate(
    model, loader, labels, device, ranks: Ranks = SINGLE, precision: str = "fp32"
) -> dict[str, float]:
    """Scores on the validation set, gathered from every process's share."""
    logits = featurize_batches(model, loader, device, "validating", precision)
    logits = ranks.gather_rows(logits)
    loss = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels)).item()
    predicted = logits.argmax(1)
    return {
        "val/loss": loss,
        "val/accuracy": float(np.mean(predicted == labels)),
        MONITOR: class_avg_accuracy(labels, predicted, logits.shape[1]),
    }


def make_scheduler(optimizer, settings: Refinement, steps_per_epoch: int):
    """Per-step learning rate. `step`: the original's (lr, then lr/10 from the first
    milestone epoch, lr/100 from the second); `cosine`: cosine decay to zero over all
    epochs; `onecycle`: warm-up then annealing (torch's OneCycleLR)."""
    total = max(1, settings.epochs * steps_per_epoch)
    if settings.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, settings.lr, total_steps=total)
    if settings.schedule == "cosine":
        factor = lambda i: 0.5 * (1 + math.cos(math.pi * min(i, total) / total))  # noqa: E731
    elif settings.schedule == "step":
        milestones = sorted(settings.milestones)
        factor = lambda i: 0.1 ** sum(i // steps_per_epoch >= m for m in milestones)  # noqa: E731
    else:
        raise UserError(
            f"classifier.schedule={settings.schedule!r}; expected step, cosine or onecycle"
        )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def lone_last_batch(images: int, batch_size: int) -> bool:
    """Would an epoch end on a batch of one image? It is dropped: batch norm cannot train on
    a single image (with a 1x1 feature map it refuses to)."""
    return images > 1 and images % batch_size == 1


def load_schedule(scheduler, state: dict) -> None:
    """Restore a schedule's position, keeping its length as configured now: a run resumed
    with more epochs stretches its schedule from there (cosine reads the length live;
    one-cycle stores its phases, so they are taken from the new schedule). Without this a
    finished one-cycle run extended by a resume fails with 'Tried to step N times'."""
    configured = {k: v for k, v in scheduler.__dict__.items() if k in ONE_CYCLE_LENGTH}
    scheduler.load_state_dict(state)
    scheduler.__dict__.update(configured)


ONE_CYCLE_LENGTH = ("total_steps", "_schedule_phases")  # what OneCycleLR derives from epochs


def _clamp_batch_size(batch_size: int, train_images: int, processes: int = 1) -> int:
    """A batch no larger than the training set; under torchrun still a multiple of the
    number of processes (each takes an equal share), so a small set does not refuse to run."""
    if batch_size > train_images:
        fitting = max(processes, train_images - train_images % processes)
        log.warning(
            f"classifier.batch_size={batch_size} is larger than the {train_images} training "
            f"images; using {fitting}"
        )
        return fitting
    return batch_size
