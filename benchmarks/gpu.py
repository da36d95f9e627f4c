"""The suite's GPU part: `python -m benchmarks.gpu [--quick] [--out DIR]` (DIR defaults to $OUT).

On a CUDA machine, measures (images/s, CUDA-synchronised wall clock):
  1. a training step on random pixels, mixed precision and channels-last on and off, with
     the host's time to queue a step (when it nears the step's time, Python is the limit);
  2. `refine` end to end (files → decode → augment → model), mixed precision on and off,
     per epoch, training only, against the step of 1 (the data path's share);
  3. featurisation end to end against the pure forward pass on random pixels;
  4. the data pipeline alone, in one process, to know what one of this machine's cores decodes.
Imports only torch-side code (no MLflow, Hydra or Optuna), so it runs on a bare GPU image,
in about three minutes on an H200. Prints each figure as it goes and writes gpu.json.
"""

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch

from benchmarks import pipeline, training
from benchmarks.common import machine, markdown_table, texture_set
from src.data.presets import augment, load_pixels
from src.device import configure, resolve_workers
from src.precision import resolve_precision

SIZE = 224


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke test: tiny sizes")
    parser.add_argument("--out", default=os.environ.get("OUT", "."), help="folder for gpu.json")
    parser.add_argument("--device", default="cuda", help="cpu: a smoke test of this script")
    args = parser.parse_args()
    device = torch.device(args.device)
    configure(device)
    workers = resolve_workers("auto", device)
    cuda = device.type == "cuda"
    mixed = resolve_precision("auto", device)  # what src.run computes in here by default
    unique, repeat = (48, 1) if args.quick else (640, 8)
    files, labels = texture_set(unique)
    # The files listed `repeat` times: every item is still read and decoded, and an epoch
    # is long enough for the steady state to show.
    paths, labels = files * repeat, np.tile(labels, repeat)
    result = {"machine": machine(device, workers), "images": len(paths), "unique_files": unique}
    print(json.dumps(result["machine"]), flush=True)

    steps = 2 if args.quick else 25
    configs = (
        [("resnet18", 128), ("resnet50", 64), ("resnet50", 256)] if cuda else [("resnet18", 4)]
    )
    result["train_step"] = []
    for arch, batch in configs:
        for precision in (mixed, "fp32"):
            for channels_last in (True, False):
                row = training.train_step(
                    arch, SIZE, batch, precision, channels_last, steps, device
                )
                result["train_step"].append(row)
                print(f"train step: {row}", flush=True)

    result["refine"] = []
    refine_batch = 64 if cuda else 4
    for precision in (mixed, "fp32"):
        step = next(
            r["img/s"]
            for r in result["train_step"]
            if r["model"] == ("resnet50" if cuda else "resnet18")
            and r["batch"] == refine_batch
            and r["precision"] == precision
            and r["channels-last"]
        )
        epochs = training.refine_epochs(
            paths,
            labels,
            len(paths) // 8,
            "resnet50" if cuda else "resnet18",
            SIZE,
            refine_batch,
            1 if args.quick else 2,
            precision,
            device,
            workers,
        )
        for row in epochs:
            row["of the train step"] = row["train img/s"] / step
            result["refine"].append(row)
            print(f"refine: {row}", flush=True)

    result["featurize"] = pipeline.featurisation(
        paths,
        ("resnet18", "resnet50"),
        SIZE,
        128 if cuda else 4,
        workers,
        device,
        0,
        precision=mixed,
    )

    datas = [p.read_bytes() for p in files[:200]]
    rng = np.random.default_rng(0)
    result["data_per_core"] = {
        "load_pixels img/s": pipeline.rate(
            lambda: [load_pixels(d, SIZE) for d in datas], len(datas)
        ),
        "augment img/s": pipeline.rate(lambda: [augment(d, SIZE, rng) for d in datas], len(datas)),
    }
    print(f"data per core: {result['data_per_core']}", flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.json").write_text(json.dumps(result, indent=2))
    for name in ("train_step", "refine", "featurize"):
        print(f"\n### {name}\n\n{markdown_table(result[name])}")
    print(f"\n(written to {out / 'gpu.json'})")


if __name__ == "__main__":
    main()
