"""Refining the whole network (the original workflow's Part 2): SGD on a new head.

`train_network` is the training loop, in named steps: `start_training` makes what the
epochs share (the optimiser, schedule, loaders, wrapped model), then each `run_epoch` is one
epoch of augmented training and validation with the plain letterbox, then a checkpoint,
then `stop_reason` asks the callbacks and early stopping. The weights of the best epoch (by
validation class-averaged accuracy) are the ones it leaves in the model. Under torchrun the
same loop runs in every process (src/classifiers/distributed.py): `ranks` shards the data,
wraps the model for DistributedDataParallel and sums the epoch's counts; in one process it
changes nothing.
"""

import copy
import logging
import math
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from src.classifiers.callbacks import (
    MONITOR,
    Callback,
    callback_name,
    kept_epoch,
    should_stop_early,
)
from src.classifiers.checkpoint import restore_rng_state, save_checkpoint
from src.classifiers.distributed import SINGLE, Ranks
from src.classifiers.network import ImageClassifier
from src.classifiers.selection import class_avg_accuracy
from src.data.loader import EpochSampler, ImageDataset, SeededItems, make_loader
from src.data.presets import ImageSpec, augment, load_pixels
from src.device import Compute
from src.errors import UserError
from src.features.featurize import image_files, loader_outputs
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
    scale: list[float] | None = None  # the scale-jitter crop's range of area shares
    jitter: float = 0.2
    hflip: bool = False
    label_smoothing: float = 0.0
    warmup_epochs: float = 0.0
    ema: float = 0.0  # decay per step of the weights' moving average (0: none)
    optimizer: str = "sgd"  # sgd | adamw
    backbone_lr: float = 1.0  # the backbone's learning rate, as a share of the head's
    refit: bool = True  # the served network: retrained on train + validation (`retrain`)
    compile: bool = False
    sync_batchnorm: bool = False  # under torchrun on GPUs: batch statistics over all processes


@dataclass
class TrainingResult:
    history: list[dict[str, float]]  # one dict of metrics per epoch run, resumed ones included
    best_epoch: int  # the epoch kept (callbacks.kept_epoch)
    stopped_by: str | None  # "early_stopping", a callback's name, or None (ran all epochs)


@dataclass(frozen=True)
class Hooks:
    """What the run around a training plugs into it; the defaults change nothing."""

    callbacks: tuple[Callback, ...] = ()  # called after each epoch; True stops the training
    checkpoint: Path | None = None  # written after each epoch (src/classifiers/checkpoint.py)
    resume: dict | None = None  # a checkpoint's content to go on from
    ranks: Ranks = SINGLE  # the processes training together under torchrun


NO_HOOKS = Hooks()


@dataclass
class Training:
    """Everything a training keeps across its epochs, made once by `start_training`."""

    model: ImageClassifier  # the plain module: validation, checkpoints, the logged model
    step: nn.Module  # what a training step calls: `model`, wrapped for DDP and/or compiled
    frozen: nn.Module | None  # a part that stays in eval mode (a frozen backbone)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    autocast: AbstractContextManager  # what the forward passes compute in
    label_smoothing: float
    ema: torch.optim.swa_utils.AveragedModel | None  # the averaged weights (validated, kept)
    items: EpochSampler | SeededItems  # set_epoch before each epoch
    train_loader: DataLoader
    val_loader: DataLoader
    val_labels: np.ndarray
    compute: Compute
    ranks: Ranks


def train_network(
    model: ImageClassifier,
    train: tuple[list[Path], np.ndarray],
    val: tuple[list[Path], np.ndarray],
    settings: Refinement,
    image: ImageSpec,
    compute: Compute,
    *,
    hooks: Hooks = Hooks(),
) -> TrainingResult:
    """Train `model` in place; it ends holding the best epoch's weights. Forward passes
    compute in `compute.precision` (src/precision.py); weights and the loss stay fp32."""
    training = start_training(model, train, val, settings, image, compute, hooks.ranks)
    history, best_state, start = go_on_from(training, hooks.resume)
    # a run that had stopped early before it was interrupted stays stopped when resumed
    stopped_by = (
        "early_stopping" if history and should_stop_early(history, settings.patience) else None
    )
    for epoch in range(start, settings.epochs) if stopped_by is None else ():
        metrics = run_epoch(training, epoch)
        history.append(metrics)
        if kept_epoch(history, len(val[1])) == epoch:
            kept = kept_model(training).state_dict()
            best_state = copy.deepcopy({k: v.cpu() for k, v in kept.items()})
        if hooks.checkpoint is not None:
            save_checkpoint(
                hooks.checkpoint, checkpoint_state(training, epoch, history, best_state)
            )
        # shown once kept: Ctrl-C after this line finds the epoch in the checkpoint
        log.info(epoch_line(epoch, metrics))
        stopped_by = stop_reason(hooks, history, settings.patience)
        if stopped_by:
            log.info(f"stopped after epoch {epoch} ({stopped_by})")
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    kept = kept_epoch(history, len(val[1])) if history else -1
    return TrainingResult(history, kept, stopped_by)


def retrain(
    model: ImageClassifier,
    data: tuple[list[Path], np.ndarray],
    settings: Refinement,
    image: ImageSpec,
    compute: Compute,
    ranks: Ranks = SINGLE,
) -> list[dict[str, float]]:
    """Train `model` in place on `data` (train + validation) for `settings.epochs` epochs,
    the number a training with validation chose; no validation, no early stopping, nothing
    kept but the end (or its moving average). Returns each epoch's training metrics."""
    no_validation = ([], np.zeros(0, np.int64))
    training = start_training(model, data, no_validation, settings, image, compute, ranks)
    history = []
    for epoch in range(settings.epochs):
        history.append(run_epoch(training, epoch))
        done = history[-1]  # worded apart from training's "epoch N: train loss" lines
        log.info(
            f"retrained epoch {epoch} on train + validation: loss {done['train/loss']:.3f}, "
            f"accuracy {done['train/accuracy']:.3f} | "
            f"{done['time/train_images_per_second']:.0f} img/s"
        )
    if training.ema is not None:
        model.load_state_dict(training.ema.module.state_dict())
    return history


def start_training(
    model: ImageClassifier,
    train: tuple[list[Path], np.ndarray],
    val: tuple[list[Path], np.ndarray],
    settings: Refinement,
    image: ImageSpec,
    compute: Compute,
    ranks: Ranks = SINGLE,
) -> Training:
    """The optimiser, schedule, loaders and wrapped model of a training (and of the lr range
    test, which trains the same way)."""
    device = compute.device
    batch_size = ranks.batch_share(
        _clamp_batch_size(settings.batch_size, len(train[0]), ranks.world_size)
    )
    model = model.to(device).to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, settings)
    sampler = EpochSampler(
        train[1],
        settings.balance_classes,
        settings.max_train_images,
        compute.seed,
        ranks.rank,
        ranks.world_size,
    )
    steps_per_epoch = len(sampler) // batch_size + (
        len(sampler) % batch_size > 0 and not small_last_batch(len(sampler), batch_size)
    )
    step = ranks.wrap(model, device, settings.sync_batchnorm)
    items, train_loader, val_loader = epoch_loaders(
        train, val, sampler, settings, image, compute, batch_size=batch_size, ranks=ranks
    )
    return Training(
        model=model,
        step=torch.compile(step) if settings.compile else step,
        frozen=model.featurizer if settings.freeze_backbone else None,
        optimizer=optimizer,
        scheduler=make_scheduler(optimizer, settings, steps_per_epoch),
        autocast=autocast(device, compute.precision),
        # fp16 needs its gradients scaled to stay representable; bf16 and fp32 do not
        scaler=torch.amp.GradScaler(device.type, enabled=needs_grad_scaler(compute.precision)),
        label_smoothing=settings.label_smoothing,
        ema=weight_average(model, settings.ema),
        items=items,
        train_loader=train_loader,
        val_loader=val_loader,
        val_labels=val[1],
        compute=compute,
        ranks=ranks,
    )


def make_optimizer(model: ImageClassifier, settings: Refinement) -> torch.optim.Optimizer:
    """SGD with momentum (the original's), or AdamW; the backbone at `backbone_lr` times
    the head's rate (discriminative rates, fastai's `lr_mult`), a frozen backbone not at all."""
    if settings.freeze_backbone:
        for parameter in model.featurizer.parameters():
            parameter.requires_grad_(False)
    backbone = [p for p in model.featurizer.parameters() if p.requires_grad]
    groups = [  # the head first: its rate is the one logged as `lr`
        {"params": list(model.head.parameters()), "lr": settings.lr, "lr_share": 1.0},
        {
            "params": backbone,
            "lr": settings.lr * settings.backbone_lr,
            "lr_share": settings.backbone_lr,
        },
    ]
    groups = [g for g in groups if g["params"]]
    if settings.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=settings.lr, weight_decay=settings.weight_decay)
    if settings.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay
        )
    raise UserError(f"classifier.optimizer={settings.optimizer!r}; expected sgd or adamw")


def weight_average(model: ImageClassifier, decay: float):
    """An exponential moving average of the weights and batch-norm statistics, updated after
    each step (None for decay 0): what validation scores and the run keeps."""
    if not decay:
        return None
    return torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(decay), use_buffers=True
    )


def kept_model(training: Training) -> nn.Module:
    """The weights an epoch is judged by and kept as: their moving average, if any."""
    return training.model if training.ema is None else training.ema.module


def go_on_from(training: Training, resume: dict | None):
    """The history, best weights and first epoch: from a checkpoint's state, or fresh."""
    if resume is None:
        return [], None, 0
    training.model.load_state_dict(resume["model"])
    training.optimizer.load_state_dict(resume["optimizer"])
    load_schedule(training.scheduler, resume["scheduler"])
    training.scaler.load_state_dict(resume["scaler"])
    if training.ema is not None:
        training.ema.load_state_dict(resume["ema"])
    restore_rng_state(resume["rng"])
    return resume["history"], resume["best_model"], resume["epoch"] + 1


def checkpoint_state(training: Training, epoch: int, history: list, best_state) -> dict:
    return {
        "epoch": epoch,
        "model": training.model.state_dict(),
        "optimizer": training.optimizer.state_dict(),
        "scheduler": training.scheduler.state_dict(),
        "scaler": training.scaler.state_dict(),
        "ema": training.ema.state_dict() if training.ema is not None else None,
        "history": history,
        "best_model": best_state,
    }


def stop_reason(hooks: Hooks, history: list[dict], patience: int) -> str | None:
    """Why to stop after the epoch just run: a callback's name, early stopping, or None.
    Every callback sees every epoch; rank 0's decide for all processes."""
    epoch, metrics, stopped_by = len(history) - 1, history[-1], None
    for callback in hooks.callbacks:
        if callback(epoch, metrics):
            stopped_by = stopped_by or callback_name(callback)
    if stopped_by is None and should_stop_early(history, patience):
        stopped_by = "early_stopping"
    return hooks.ranks.broadcast(stopped_by)


def run_epoch(training: Training, epoch: int) -> dict[str, float]:
    """One epoch of training, then validation; the epoch's metrics."""
    ranks, seed = training.ranks, training.compute.seed
    # dropout: fixed per epoch (and process: each draws its own)
    torch.manual_seed((seed * 1_000_003 + epoch) * ranks.world_size + ranks.rank)
    training.items.set_epoch(epoch)
    started = time.perf_counter()
    loss_sum, correct, seen = ranks.sum(*train_one_epoch(training, epoch))
    training_seconds = time.perf_counter() - started
    val_metrics = (
        validate(
            kept_model(training), training.val_loader, training.val_labels, training.compute, ranks
        )
        if len(training.val_labels)
        else {}  # retraining on train + validation: nothing held out
    )
    seconds = time.perf_counter() - started
    metrics = {
        "train/loss": loss_sum / max(seen, 1),
        "train/accuracy": correct / max(seen, 1),
        **val_metrics,
        "lr": training.optimizer.param_groups[0]["lr"],
        "time/epoch_seconds": seconds,
        "time/train_images_per_second": seen / training_seconds,
    }
    return metrics


def epoch_line(epoch: int, metrics: dict[str, float]) -> str:
    return (
        f"epoch {epoch}: train loss {metrics['train/loss']:.3f}, accuracy "
        f"{metrics['train/accuracy']:.3f} | val accuracy {metrics['val/accuracy']:.3f}, "
        f"class-avg {metrics[MONITOR]:.3f} | {metrics['time/epoch_seconds']:.1f} s, "
        f"{metrics['time/train_images_per_second']:.0f} img/s"
    )


def train_one_epoch(training: Training, epoch: int) -> tuple[float, int, int]:
    """One pass over the training loader; returns (sum of losses, correct predictions,
    images seen)."""
    training.step.train()
    if training.frozen is not None:
        training.frozen.eval()  # frozen batch-norm statistics stay as they were
    optimizer, scaler, device = training.optimizer, training.scaler, training.compute.device
    total_loss, correct, seen = 0.0, 0, 0
    progress = tqdm(training.train_loader, desc=f"epoch {epoch}", unit="batch", leave=False)
    for pixels, labels, index in progress:
        keep, weight = index >= 0, 1.0  # drop images that failed to decode
        if not keep.any():
            if not torch.distributed.is_initialized():
                continue
            # every process must take part in each step: one blank image, weighted 0
            keep[0], labels[0], weight = True, 0, 0.0
        pixels = pixels[keep].to(device, non_blocking=True)
        labels = labels[keep].to(device, non_blocking=True)
        with training.autocast:
            logits = training.step(pixels)
            loss = (
                F.cross_entropy(logits.float(), labels, label_smoothing=training.label_smoothing)
                * weight
            )
        if not torch.isfinite(loss):
            raise UserError(
                f"the training loss became {loss.item()} in epoch {epoch} at learning rate "
                f"{optimizer.param_groups[0]['lr']:g}; lower classifier.lr"
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        training.scheduler.step()
        if training.ema is not None:
            training.ema.update_parameters(training.model)
        if weight:
            total_loss += loss.item() * len(labels)
            correct += (logits.argmax(1) == labels).sum().item()
            seen += len(labels)
        progress.set_postfix(loss=f"{total_loss / max(seen, 1):.3f}")
    return total_loss, correct, seen


def epoch_loaders(train, val, sampler, settings, image, compute, *, batch_size, ranks=SINGLE):
    """The training and validation loaders, made once: their worker processes live across
    epochs. Returns also what to call `set_epoch` on before each epoch. Under torchrun each
    process validates its share of the validation set."""
    size, device, workers, seed = image.size, compute.device, compute.workers, compute.seed
    if settings.augment:
        transform = partial(
            augment,
            size=size,
            crop=settings.crop,
            jitter=settings.jitter,
            hflip=settings.hflip,
            scale=tuple(settings.scale) if settings.scale else None,
        )
        items = SeededItems(sampler, seed)  # each image's augmentation seeded by its own key
    else:
        transform = partial(load_pixels, size=size, mode=image.preprocessing)
        items = sampler
    train_set = ImageDataset(train[0], list(train[1]), transform, size)
    train_loader = make_loader(
        train_set,
        batch_size,
        workers,
        device,
        sampler=items,
        seed=seed,
        persistent=True,
        drop_last=small_last_batch(len(sampler), batch_size),
    )
    val_set = image_files(ranks.shard(val[0]), image)
    val_loader = make_loader(val_set, batch_size, workers, device, persistent=True)
    return items, train_loader, val_loader


def validate(model, loader, labels, compute: Compute, ranks: Ranks = SINGLE) -> dict[str, float]:
    """Scores on the validation set, gathered from every process's share."""
    logits = loader_outputs(model, loader, compute, "validating")
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
    warmup = settings.warmup_epochs * steps_per_epoch
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
    if warmup > 0:  # linear from lr / warmup steps up to the schedule's rate
        decay = factor
        factor = lambda i: min(1.0, (i + 1) / warmup) * decay(i)  # noqa: E731
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def small_last_batch(images: int, batch_size: int) -> bool:
    """Would an epoch end on a batch of less than half the batch size? It is dropped (the
    epoch's order is reshuffled, so every image is still seen). Batch norm trains on the
    batch's own statistics: a batch of one it cannot train on, and with a 1x1 feature map (a
    ResNet at 32 px) a batch of 2 gave statistics so wild that the network's logits reached
    1e12 (18 images at batch 16: 16, then 2; retraining on train + validation hit it)."""
    remainder = images % batch_size
    return images > batch_size and 0 < remainder < batch_size / 2 or images > 1 and remainder == 1


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
