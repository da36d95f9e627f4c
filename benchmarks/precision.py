"""`python -m benchmarks.precision [--quick] [--rounds N]`: bf16 against fp32 on this CPU.

On a shared machine others' load comes and goes, so bf16 and fp32 take turns in this one
process, `rounds` times, and each figure is the median of its rounds' ratios (bf16 / fp32,
or the latency ratio for serving). Measured, at 224 px:
  1. the forward pass alone (channels-last, random pixels) of resnet18 and resnet50 at
     featurisation batches 8, 16 and 32: what `resolution.featurize_batch_size_cpu` is set by;
  2. featurisation end to end (files → decode → model → features) at the configured batch,
     `auto` against fp32, and the features' parity (mean cosine similarity);
  3. one refinement epoch (augmented, training only) of resnet18 at batch 16;
  4. the served model (the pyfunc, in process: base64 → decode → model) on one image, p50;
  5. learning: a refinement on the learnable colour set from random weights, one per seed
     and precision, its final validation class-averaged accuracy: bf16 against fp32's mean,
     and fp32's own spread over the seeds (the run-to-run noise it must stay within).
Prints a Markdown table, labelled with the CPU and the load average, and writes precision.json.
"""

import argparse
import base64
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch
from omegaconf import OmegaConf

from benchmarks import training
from benchmarks.common import (
    BENCH_DIR,
    cpu_model,
    markdown_table,
    texture_set,
    write_colour_dataset,
)
from src.classifiers.network import make_spec
from src.data.presets import ImageSpec, load_pixels
from src.device import Compute, configure, resolve_workers
from src.features.backbone import build_featurizer
from src.features.featurize import model_outputs, prepare_for_inference
from src.pipeline import featurize_batch_size
from src.precision import autocast, detect_native_bf16, resolve_precision

SIZE = 224
CONF = Path(__file__).resolve().parents[1] / "conf"
CPU = torch.device("cpu")
PARTS = ("forward", "featurisation", "refinement", "serving", "learning")


def forward_rate(model, pixels, precision: str, batches: int) -> float:
    """Images/s of `batches` forward passes on `pixels` (one batch), after one warm-up."""
    with torch.inference_mode(), autocast(CPU, precision):
        model(pixels)
        started = time.perf_counter()
        for _ in range(batches):
            model(pixels)
    return batches * len(pixels) / (time.perf_counter() - started)


def forward(archs, batch_sizes, rounds: int, images: int) -> list[dict]:
    """Every batch size and precision takes its turn in each round, so the batch sizes are
    compared under the same load too (for `featurize_batch_size_cpu`)."""
    rows = []
    for arch in archs:
        model = prepare_for_inference(build_featurizer(arch, "none")[0], CPU)
        inputs = {
            b: torch.randint(0, 256, (b, SIZE, SIZE, 3), dtype=torch.uint8) for b in batch_sizes
        }
        rates = {b: {"fp32": [], "bf16": []} for b in batch_sizes}
        for _ in range(rounds):
            for batch, pixels in inputs.items():
                for precision in rates[batch]:
                    rates[batch][precision].append(
                        forward_rate(model, pixels, precision, max(1, images // batch))
                    )
        rows += [row(f"{arch} forward, batch {b}", "img/s", rates[b]) for b in batch_sizes]
    return rows


def featurisation(archs, paths, batches: dict, workers: int, rounds: int, auto: str) -> list[dict]:
    """Each precision at the batch src.run featurises with in it (`batches`)."""
    rows = []
    for arch in archs:
        model = prepare_for_inference(build_featurizer(arch, "none")[0], CPU)
        rates, features = {"fp32": [], auto: []}, {}
        model_outputs(
            model, paths[:8], ImageSpec(SIZE), Compute(CPU, auto, workers), batches[auto], ""
        )
        for _ in range(rounds):
            for precision in rates:
                started = time.perf_counter()
                batch = batches[precision]
                features[precision] = model_outputs(
                    model, paths, ImageSpec(SIZE), Compute(CPU, precision, workers), batch, ""
                )
                rates[precision].append(len(paths) / (time.perf_counter() - started))
        sizes = f"batch {batches['fp32']} (fp32), {batches[auto]} ({auto})"
        result = row(f"{arch} featurisation end to end, {sizes}", "img/s", rates, auto)
        a, b = features["fp32"], features[auto]
        cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        result["parity"] = f"cosine {cosine.mean():.5f}"
        rows.append(result)
    return rows


def refinement(paths, labels, rounds: int, workers: int) -> list[dict]:
    rates = {"fp32": [], "bf16": []}
    for _ in range(rounds):
        for precision in rates:
            (epoch,) = training.refine_epochs(
                paths, labels, 3, "resnet18", SIZE, 16, 1, precision, CPU, workers
            )
            rates[precision].append(epoch["train img/s"])
    return [row("resnet18 refinement epoch, batch 16 (train img/s)", "img/s", rates)]


def serving(calls: int, rounds: int) -> list[dict]:
    """The pyfunc as `mlflow models serve` runs it, minus HTTP: one image per call."""
    from src.deployment.served_model import ImageClassifierModel
    from src.tracking.pyfunc_model import encode_jpeg

    classifier = training.classifier("resnet18")
    spec = make_spec(classifier, "resnet18", "dnn", ["a", "b", "c"], SIZE, "letterbox", 0.5)
    paths, _ = texture_set(3)
    image = encode_jpeg(load_pixels(paths[0].read_bytes(), 320, "letterbox"))
    frame = pd.DataFrame({"image": [base64.b64encode(image).decode()]})
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(spec, Path(tmp) / "network.pt")
        model = ImageClassifierModel()
        model.load_context(SimpleNamespace(artifacts={"network": str(Path(tmp) / "network.pt")}))
    latencies = {"fp32": [], "bf16": []}
    for _ in range(rounds):
        took = {p: [] for p in latencies}
        for _ in range(calls):
            for precision in took:  # call by call: load hits both alike
                model.precision = precision
                started = time.perf_counter()
                model.predict(None, frame)
                took[precision].append(1000 * (time.perf_counter() - started))
        for precision in latencies:
            latencies[precision].append(statistics.median(took[precision][1:]))
    return [row("served model, one image, p50 latency (in process)", "ms", latencies)]


def learning(seeds, per_class: int, epochs: int, size: int) -> list[dict]:
    """Final validation class-averaged accuracy per seed; the same split, settings and
    initial weights for both precisions of a seed. Validation is 12 images per class."""
    from src.classifiers.dnn import Hooks, Refinement, train_network
    from src.data.prepare import SplitSettings, prepare_dataset

    root = write_colour_dataset(BENCH_DIR / f"colours-{per_class}", per_class)
    data = prepare_dataset(root, SplitSettings(0.6, 0.2), 0, None, None, 2)
    splits = {
        s: ([f.path for f in data.subset(s)], data.labels(data.subset(s))) for s in ("train", "val")
    }
    settings = Refinement(epochs=epochs, patience=0)  # the shipped lr, schedule, augmentation
    scores = {"fp32": [], "bf16": []}
    for seed in seeds:
        for precision in scores:
            torch.manual_seed(seed)
            model = training.classifier("resnet18")
            result = train_network(
                model,
                splits["train"],
                splits["val"],
                settings,
                ImageSpec(size),
                Compute(CPU, precision, workers=0, seed=seed),
                hooks=Hooks(),
            )
            scores[precision].append(result.history[-1]["val/class_avg_accuracy"])
    result = row(
        f"resnet18 refinement, colour set, {size} px, {epochs} epochs: final val class-avg "
        f"accuracy, seeds {','.join(map(str, seeds))}",
        "accuracy",
        scores,
    )
    gap = abs(statistics.mean(scores["bf16"]) - statistics.mean(scores["fp32"]))
    spread = max(scores["fp32"]) - min(scores["fp32"])
    result["parity"] = (
        f"mean gap {gap:.3f}, fp32's spread over seeds {spread:.3f}; "
        f"fp32 {'/'.join(f'{v:.2f}' for v in scores['fp32'])}, "
        f"bf16 {'/'.join(f'{v:.2f}' for v in scores['bf16'])}"
    )
    return [result]


def row(measurement: str, unit: str, values: dict, faster: str = "bf16") -> dict:
    """Medians of each precision's rounds, and of the rounds' ratios (`faster` / fp32)."""
    ratios = [b / a for a, b in zip(values["fp32"], values[faster], strict=True)]
    return {
        "measurement": measurement,
        "unit": unit,
        "fp32": statistics.median(values["fp32"]),
        "bf16 (auto)": statistics.median(values[faster]),
        "ratio (median)": statistics.median(ratios),
        "ratio range": f"{min(ratios):.2f}–{max(ratios):.2f}",
        "rounds": len(ratios),
        "parity": "",
    }


def measure(quick: bool, rounds: int, only=PARTS) -> tuple[str, list[dict]]:
    """The parts in `only`, each precision taking turns `rounds` times: the machine's line
    (its bf16 capability, what `auto` chose, the load) and one row per measurement."""
    configure(CPU)
    workers = resolve_workers("auto", CPU)
    auto = resolve_precision("auto", CPU)
    default = OmegaConf.load(CONF / "resolution" / "224.yaml")
    sizes = default.featurize_batch_size, default.featurize_batch_size_cpu
    batches = {p: featurize_batch_size(*sizes, CPU, p) for p in ("fp32", auto)}
    archs = ("resnet18",) if quick else ("resnet18", "resnet50")
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    rows = []
    if "forward" in only:
        rows += forward(archs, (8,) if quick else (8, 16, 32), rounds, 8 if quick else 32)
    if "featurisation" in only:
        # 128 images: a round of 32 took 0.4 s in bf16, and its ratio swung 1.4-1.9 between runs
        paths, _ = texture_set(8 if quick else 128)
        rows += featurisation(archs, paths, batches, workers, rounds, auto)
    if "refinement" in only:
        paths, labels = texture_set(12 if quick else 35)
        rows += refinement(paths, labels, rounds, workers)
    if "serving" in only:
        rows += serving(3 if quick else 11, rounds)
    if "learning" in only:  # at 64 px: the learning, not the speed, is what it measures
        rows += learning((0,) if quick else (0, 1, 2), 12 if quick else 60, 1 if quick else 6, 64)
    label = (
        f"{cpu_model()}, {os.cpu_count()} cores, native bf16: "
        f"{str(detect_native_bf16(CPU)).lower()}, auto = {auto}; load average (1 min) "
        f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after; "
        f"{time.perf_counter() - started:.0f} s; torch {torch.__version__}"
    )
    return label, rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke test: tiny sizes")
    parser.add_argument("--rounds", type=int, default=3, help="turns each precision takes")
    parser.add_argument("--only", default=",".join(PARTS))
    parser.add_argument("--out", default=str(BENCH_DIR), help="folder for precision.json")
    args = parser.parse_args(argv)
    label, rows = measure(args.quick, args.rounds, args.only.split(","))
    table = markdown_table(rows)
    print(f"\n{label}\n\n{table}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "precision.json").write_text(json.dumps({"machine": label, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
