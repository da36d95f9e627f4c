"""GPU checks of the refinement and featurisation paths: `python -m benchmarks.gpu [--quick]`.

On a CUDA machine, measures (images/s, CUDA-synchronised wall clock):
  1. a training step on random pixels, with mixed precision and channels-last on and off;
  2. `refine` end to end (files → decode → augment → model), mixed precision on and off,
     so the data loader's share is visible;
  3. featurisation end to end against the pure forward pass on random pixels.
Imports only torch-side code (no MLflow, Hydra or Optuna), so it runs on a bare GPU image.
Writes a JSON file next to printing a table.
"""

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from src.classifiers.dnn import Refinement, refine
from src.classifiers.network import ImageClassifier, make_head
from src.data.synthetic import ensure_synthetic_textures
from src.device import configure, resolve_workers
from src.features.backbone import build_featurizer, feature_size
from src.features.featurize import autocast, featurize, prepare_for_inference


def timed(fn, repeats: int) -> float:
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return time.perf_counter() - start


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def train_step_throughput(arch, size, batch, amp, channels_last, steps, device) -> float:
    torch.manual_seed(0)
    featurizer, _ = build_featurizer(arch, "none")
    model = ImageClassifier(featurizer, make_head("dnn", feature_size(arch), 3, 0.5), False)
    model = model.to(device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    fp16 = amp and device.type == "cuda" and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler(enabled=fp16)
    pixels = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, device=device)
    if not channels_last:  # NHWC → NCHW contiguous before the model's own permute
        pixels = pixels.permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1)
    labels = torch.randint(0, 3, (batch,), device=device)

    def step():
        with autocast(device, amp):
            loss = F.cross_entropy(model(pixels).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    timed(step, 5)  # warm-up: cuDNN picks its kernels
    return steps * batch / timed(step, steps)


def refine_throughput(paths, labels, arch, size, batch, amp, epochs, device, workers) -> dict:
    torch.manual_seed(0)
    featurizer, _ = build_featurizer(arch, "none")
    model = ImageClassifier(featurizer, make_head("dnn", feature_size(arch), 3, 0.5), False)
    settings = Refinement(epochs=epochs, lr=0.01, batch_size=batch, amp=amp, patience=0)
    half = len(paths) // 8
    refined = refine(
        model,
        (paths, labels),
        (paths[:half], labels[:half]),
        settings,
        size,
        "letterbox",
        device,
        workers,
        seed=0,
    )
    last = refined.history[-1]
    return {
        "train_images_per_second": last["time/train_images_per_second"],
        "epoch_seconds": last["time/epoch_seconds"],
    }


def featurize_vs_forward(paths, arch, size, batch, device, workers) -> dict:
    featurizer, _ = build_featurizer(arch, "none")
    model = prepare_for_inference(featurizer, device)
    pixels = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, device=device)
    with torch.inference_mode(), autocast(device):
        timed(lambda: model(pixels), 3)
        repeats = max(3, len(paths) // batch)
        forward = repeats * batch / timed(lambda: model(pixels), repeats)
    featurize(model, paths[: batch * 2], size, "letterbox", batch, workers, device)  # warm-up
    start = time.perf_counter()
    featurize(model, paths, size, "letterbox", batch, workers, device)
    end_to_end = len(paths) / (time.perf_counter() - start)
    return {"pure_forward": forward, "end_to_end": end_to_end, "ratio": end_to_end / forward}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    parser.add_argument("--device", default="cuda", help="cpu: a smoke test of this script")
    args = parser.parse_args()
    device = torch.device(args.device)
    configure(device)
    workers = resolve_workers("auto", device)
    images = 96 if args.quick else 640
    root = ensure_synthetic_textures(
        Path(tempfile.gettempdir()) / "gpu-bench-set", images // 3, 256, 0
    )
    paths = sorted(root.glob("*/*.jpg"))
    labels = np.array([["dotted", "leopard", "striped"].index(p.parent.name) for p in paths])
    result = {
        "machine": {
            "gpu": torch.cuda.get_device_name() if device.type == "cuda" else "none",
            "torch": torch.__version__,
            "cpu_cores": os.cpu_count(),
            "python": platform.python_version(),
            "bf16": device.type == "cuda" and torch.cuda.is_bf16_supported(),
            "workers": workers,
        },
        "train_step": [],
        "refine": [],
        "featurize": [],
    }
    steps = 2 if args.quick else 30
    sizes = (
        (("resnet18", 8), ("resnet50", 4))
        if device.type == "cpu"
        else (("resnet18", 128), ("resnet50", 64))
    )
    for arch, batch in sizes:
        for amp in (True, False):
            for channels_last in (True, False):
                rate = train_step_throughput(arch, 224, batch, amp, channels_last, steps, device)
                result["train_step"].append(
                    {
                        "arch": arch,
                        "batch": batch,
                        "amp": amp,
                        "channels_last": channels_last,
                        "img_per_s": rate,
                    }
                )
                print(
                    f"train step {arch} b{batch} amp={amp} cl={channels_last}: {rate:.0f} img/s",
                    flush=True,
                )
    for amp in (True, False):
        numbers = refine_throughput(
            paths, labels, "resnet50", 224, 64, amp, 1 if args.quick else 2, device, workers
        )
        result["refine"].append({"arch": "resnet50", "batch": 64, "amp": amp, **numbers})
        print(f"refine resnet50 b64 amp={amp}: {numbers}", flush=True)
    for arch in ("resnet18", "resnet50"):
        numbers = featurize_vs_forward(
            paths, arch, 224, 128 if device.type == "cuda" else 16, device, workers
        )
        result["featurize"].append({"arch": arch, "batch": 128, **numbers})
        print(f"featurize {arch}: {numbers}", flush=True)
    Path(args.out, "gpu.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
