"""Featurisation benchmarks: end to end against the pure forward pass, the data pipeline
alone, the feature cache, and (in a child process) peak memory on a large set.

Imports only torch-side code, so the GPU entry point can use it on a bare GPU image.
"""

import json
import subprocess
import sys
import tempfile
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

from benchmarks.before import augment_before, colour_jitter_before, naive_features
from benchmarks.common import photo_like_jpeg, seconds
from src.data.folders import find_images
from src.data.images import decode_image
from src.data.inventory import content_digest
from src.data.loader import EpochSampler, ImageDataset, SeededItems, make_loader
from src.data.presets import ImageSpec, augment, colour_jitter, letterbox, load_pixels
from src.device import Compute
from src.features.backbone import build_featurizer
from src.features.cache import cached_features
from src.features.featurize import image_files, model_outputs, prepare_for_inference
from src.precision import autocast

FEATURISE_TARGET = 0.85  # end to end / pure forward, CPU, 224 px (issue 7)
CACHE_TARGET = 20  # second run / first run speed-up
MEMORY_TARGET_MB = 1500  # peak RSS above the model's own footprint, 5,000 images at 224 px
ROOT = Path(__file__).resolve().parents[1]


def pure_forward(model, batch: int, size: int, device, repeats: int, precision="fp32") -> float:
    """Images/s of the model alone on random uint8 pixels: the ceiling for featurisation."""
    pixels = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, device=device)
    with torch.inference_mode(), autocast(device, precision):
        seconds(lambda: model(pixels))  # warm-up: kernels chosen, memory allocated
        return repeats * batch / seconds(lambda: model(pixels), repeats)


def featurisation(
    paths, archs, size, batch, workers, device, naive_images, repeats=2, precision="fp32"
) -> list[dict]:
    """Benchmark 1: files → features against the pure forward pass, and the naive way.

    The forward pass and the featurisation take turns, `repeats` times, and the best of each
    counts: load from elsewhere on a shared machine then rarely hits one side only."""
    rows = []
    for arch in archs:
        featurizer, _ = build_featurizer(arch, "none")
        model = prepare_for_inference(featurizer, device)
        warm_up = paths[:batch]  # kernels chosen, memory allocated
        model_outputs(
            model, warm_up, ImageSpec(size), Compute(device, precision, workers), batch, ""
        )
        # the default worker count, and one worker (the CPU default before issue 7) to compare
        counts = [workers] if workers == 1 else [workers, 1]
        forward, end_to_end = 0.0, dict.fromkeys(counts, 0.0)
        for _ in range(repeats):
            forward = max(
                forward, pure_forward(model, batch, size, device, len(paths) // batch, precision)
            )
            for count in counts:
                took = seconds(
                    lambda m=model, c=count: model_outputs(
                        m, paths, ImageSpec(size), Compute(device, precision, c), batch
                    )
                )
                end_to_end[count] = max(end_to_end[count], len(paths) / took)
        row = {
            "model": arch,
            "batch": batch,
            "precision": precision,
            "images": len(paths),
            "pure forward img/s": forward,
            "end to end img/s": end_to_end[workers],
            "end to end / forward": end_to_end[workers] / forward,
        }
        if workers != 1:
            row["with 1 worker / forward"] = end_to_end[1] / forward
        if naive_images:
            resnet = build_featurizer(arch, "none")[0][1]  # the ResNet without `Normalize`
            naive_features(resnet, paths[:1], size)  # warm-up, as the others had
            naive = rate(
                lambda r=resnet: naive_features(r, paths[:naive_images], size), naive_images, 1
            )
            row.update(
                {"naive img/s": naive, "end to end / naive": row["end to end img/s"] / naive}
            )
        if device.type == "cpu" and size == 224:
            row["target ≥ 85% met"] = row["end to end / forward"] >= FEATURISE_TARGET
        rows.append(row)
        print(f"featurisation {arch}: {row}", flush=True)
    return rows


def data_pipeline(paths, size, workers, forward_rates: dict, photos: int) -> list[dict]:
    """Benchmark 2: decoding and preprocessing alone, images/s per worker process, against
    what the model consumes; plus the choices that made the data path fast, before/after."""
    datas = [p.read_bytes() for p in paths]
    rng = np.random.default_rng(0)
    one = rate(lambda: [load_pixels(d, size) for d in datas], len(datas))
    loader_one = loader_rate(image_files(paths, ImageSpec(size)), 1)
    rows = [
        row("decode + letterbox (load_pixels), in process", one),
        row("same, through the DataLoader, 1 worker", loader_one),
    ]
    if workers > 1:
        loader_all = loader_rate(image_files(paths, ImageSpec(size)), workers)
        rows.append(
            row(f"same, {workers} workers (the default)", loader_all, "1 worker", loader_one)
        )
    for arch, forward in forward_rates.items():  # how far decoding is from being the limit
        rows.append(row(f"one core decoding vs {arch}'s pure forward", one, arch, forward))
    augmented = rate(lambda: [augment(d, size, rng) for d in datas], len(datas))
    before = rate(lambda: [augment_before(d, size, rng) for d in datas], len(datas))
    rows.append(row("training augmentation (augment), in process", augmented, "before", before))
    pixels = [load_pixels(d, size) for d in datas[:50]]
    jitter = rate(lambda: [colour_jitter(p, rng, 0.2) for p in pixels], len(pixels))
    jitter_before = rate(lambda: [colour_jitter_before(p, rng) for p in pixels], len(pixels))
    rows.append(row("colour jitter in uint8 (OpenCV)", jitter, "float32 (before)", jitter_before))
    large = [photo_like_jpeg(1600, 1200, seed=i) for i in range(photos)]
    reduced = rate(lambda: [load_pixels(d, size) for d in large], len(large))
    full = rate(lambda: [letterbox_full_decode(d, size) for d in large], len(large))
    rows.append(row("1600x1200 JPEG, reduced-scale decode", reduced, "full decode", full))
    fresh, persistent = loader_start(paths, size, max(workers, 1))
    rows.append(
        row(
            f"epochs started per s, persistent loader ({max(workers, 1)} worker)",
            1 / persistent,
            "new loader per epoch",
            1 / fresh,
        )
    )
    for r in rows:
        print(f"data pipeline: {r}", flush=True)
    return rows


def row(step: str, per_second: float, against: str = "", other: float | None = None) -> dict:
    return {
        "step": step,
        "per second": per_second,
        "compared with": against,
        "ratio": per_second / other if other else "",
    }


def rate(fn, items: int, repeats: int = 3) -> float:
    """Items/s of `fn`, the best of a few runs (the first pays for warming caches up)."""
    return items / min(seconds(fn) for _ in range(repeats))


def letterbox_full_decode(data: bytes, size: int) -> np.ndarray:
    return letterbox(decode_image(data), size)  # at_least=0: no reduced-scale decoding


def loader_rate(dataset, workers: int) -> float:
    """Images/s out of a persistent loader (worker start-up not counted)."""
    loader = make_loader(dataset, 32, workers, torch.device("cpu"), persistent=True)
    return rate(lambda: [None for _ in loader], len(dataset))


def loader_start(paths, size: int, workers: int) -> tuple[float, float]:
    """Seconds to the first training batch of an epoch with a new loader (workers forked
    again), and with the persistent loader `refine` keeps (its second epoch)."""
    labels = [0] * len(paths)
    transform = partial(augment, size=size)
    dataset = ImageDataset(paths, labels, transform, size)
    items = SeededItems(EpochSampler(labels, False, None, 0), 0)
    fresh = seconds(
        lambda: next(iter(make_loader(dataset, 16, workers, torch.device("cpu"), sampler=items)))
    )
    loader = make_loader(dataset, 16, workers, torch.device("cpu"), sampler=items, persistent=True)
    for _ in loader:  # the first epoch starts the workers
        pass
    items.set_epoch(1)
    persistent = seconds(lambda: next(iter(loader)))
    for _ in loader:
        pass
    return fresh, persistent


def feature_cache(root: Path, size: int, batch: int, workers: int, device) -> list[dict]:
    """Benchmark 3: the same featurisation twice through the feature cache."""
    _, files = find_images(root)
    files = [replace(f, digest=content_digest(f.path)) for f in files]  # as prepare_dataset
    featurizer, _ = build_featurizer("resnet18", "none")
    identity = {"arch": "resnet18", "weights": "none", "size": size, "preprocessing": "letterbox"}
    numerics = (device.type, "fp32")  # model_outputs computes in fp32 unless told otherwise
    paths = [f.path for f in files]

    def compute():
        return model_outputs(
            featurizer, paths, ImageSpec(size), Compute(device, workers=workers), batch
        )

    with tempfile.TemporaryDirectory() as cache:
        hits = []
        first = seconds(
            lambda: hits.append(
                cached_features(Path(cache), identity, files, compute, *numerics)[1]
            )
        )
        second = seconds(
            lambda: hits.append(
                cached_features(Path(cache), identity, files, compute, *numerics)[1]
            )
        )
    assert hits == [False, True], hits
    result = {
        "images": len(files),
        "first run s": first,
        "second run s": second,
        "speed-up": first / second,
        f"target ≥ {CACHE_TARGET}x met": first / second >= CACHE_TARGET,
    }
    print(f"feature cache: {result}", flush=True)
    return [result]


def peak_memory(folder: Path, arch: str, size: int, batch: int, workers: int) -> list[dict]:
    """Benchmark 5: featurise every image in `folder` in a child process; its peak RSS."""
    command = [
        sys.executable,
        "-m",
        "benchmarks.memory",
        str(folder),
        arch,
        str(size),
        str(batch),
        str(workers),
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"memory benchmark failed: {done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result[f"target < {MEMORY_TARGET_MB} MB met"] = result["peak above model MB"] < MEMORY_TARGET_MB
    print(f"memory: {result}", flush=True)
    return [result]
