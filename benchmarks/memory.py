"""Peak memory of featurising a folder of images, measured in this (child) process:

    python -m benchmarks.memory FOLDER ARCH SIZE BATCH WORKERS

prints one JSON line: RSS after start-up, after the model is built, after one forward pass
on random pixels, and the peaks (of this process, and of its largest child: a loader
worker, if any), all in MB. The suite runs it in a fresh process
so that nothing else it did counts.
"""

import json
import resource
import sys
import time
from pathlib import Path

import torch

from src.data.presets import ImageSpec
from src.device import Compute, configure
from src.features.backbone import build_featurizer
from src.features.featurize import model_outputs, prepare_for_inference


def rss_mb(field: str = "VmRSS") -> float:
    """This process's resident memory (VmRSS), or its peak so far (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def main(folder: str, arch: str, size: str, batch: str, workers: str) -> None:
    device = torch.device("cpu")
    configure(device)
    started = rss_mb()
    featurizer, _ = build_featurizer(arch, "none")
    model = prepare_for_inference(featurizer, device)
    with_model = rss_mb()
    pixels = torch.randint(0, 256, (int(batch), int(size), int(size), 3), dtype=torch.uint8)
    with torch.inference_mode():
        model(pixels)  # one batch: the working memory of the forward pass itself
    with_batch = rss_mb()
    del pixels
    paths = sorted(Path(folder).glob("*.jpg"))
    start = time.perf_counter()
    features = model_outputs(
        model, paths, ImageSpec(int(size)), Compute(device, workers=int(workers)), int(batch)
    )
    elapsed = time.perf_counter() - start
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over from the process that
    # started this one (the suite, with its own gigabyte), VmHWM starts afresh at exec
    peak = rss_mb("VmHWM")
    # loader workers are forked from here: their peak counts the pages they share with it
    worker_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    result = {
        "model": arch,
        "images": len(paths),
        "size": int(size),
        "batch": int(batch),
        "workers": int(workers),
        "features MB": features.nbytes / 2**20,
        "RSS at start MB": started,
        "RSS with model MB": with_model,
        "peak RSS MB": peak,
        "RSS after one batch MB": with_batch,
        "peak above model MB": peak - with_model,
        "peak above model + one batch MB": peak - with_batch,
        "largest worker peak MB": worker_peak if int(workers) else 0.0,
        "images/s": len(paths) / elapsed,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:])
