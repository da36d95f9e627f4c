"""Refinement benchmarks: a training step on random pixels (the ceiling), and `refine` end
to end (files → decode → augment → model), images/s per epoch.

Imports only torch-side code, so the GPU entry point can use it on a bare GPU image.
"""

import time

import torch
import torch.nn.functional as F

from benchmarks.common import seconds, synchronize
from src.classifiers.dnn import Refinement, train_network
from src.classifiers.network import ImageClassifier, make_head
from src.data.presets import ImageSpec
from src.device import Compute
from src.features.backbone import build_featurizer, feature_size
from src.precision import autocast, needs_grad_scaler


def classifier(arch: str) -> ImageClassifier:
    torch.manual_seed(0)
    featurizer, _ = build_featurizer(arch, "none")
    return ImageClassifier(featurizer, make_head("dnn", feature_size(arch), 3, 0.5), False)


def train_step(arch, size, batch, precision, channels_last, steps, device) -> dict:
    """Images/s of training steps on random pixels, as `refine` steps (SGD, cross-entropy):
    no data loading at all. `host ms/step` is the time to queue one step without waiting
    for the GPU: when it is close to the step's time, the GPU waits for Python, not the
    other way round, and mixed precision (more, smaller kernels) cannot help.
    `precision`: fp32 | bf16 | fp16 (src/precision.py)."""
    model = classifier(arch).to(device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type, enabled=needs_grad_scaler(precision))
    pixels = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, device=device)
    if not channels_last:  # NCHW in memory once `Normalize` has permuted it
        pixels = pixels.permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1)
    labels = torch.randint(0, 3, (batch,), device=device)

    def step():
        with autocast(device, precision):
            loss = F.cross_entropy(model(pixels).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    seconds(step, 3)  # warm-up: kernels chosen, memory allocated
    elapsed = seconds(step, steps)
    synchronize()
    start = time.perf_counter()
    step()  # queued, not waited for
    host = time.perf_counter() - start
    synchronize()
    return {
        "model": arch,
        "batch": batch,
        "precision": precision,
        "channels-last": channels_last,
        "img/s": steps * batch / elapsed,
        "ms/step": 1000 * elapsed / steps,
        "host ms/step": 1000 * host,
    }


def refine_epochs(paths, labels, val_images, arch, size, batch, epochs, precision, device, workers):
    """`train_network` for a few epochs on the files; its per-epoch training images/s (training
    only, validation excluded) and epoch seconds (validation included)."""
    settings = Refinement(epochs=epochs, lr=0.01, batch_size=batch, patience=0)
    refined = train_network(
        classifier(arch),
        (paths[val_images:], labels[val_images:]),
        (paths[:val_images], labels[:val_images]),
        settings,
        ImageSpec(size),
        Compute(device, precision, workers, seed=0),
    )
    return [
        {
            "model": arch,
            "batch": batch,
            "precision": precision,
            "epoch": epoch,
            "train images": len(paths) - val_images,
            "train img/s": metrics["time/train_images_per_second"],
            "epoch s (with validation)": metrics["time/epoch_seconds"],
        }
        for epoch, metrics in enumerate(refined.history)
    ]
