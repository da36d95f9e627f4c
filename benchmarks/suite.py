"""The benchmark suite: `python -m benchmarks [--quick] [--only NAME,...] [--out FILE]`.

Runs the seven benchmarks of issue 7, bf16 against fp32 and fuzzing on this machine, prints
BENCHMARKS.md-ready Markdown tables and writes everything as JSON (default BENCHMARKS.json).
Every figure compared with another is measured in the same run, as a ratio: absolute times on
a shared machine drift. `--quick` sizes each benchmark to about a minute on 2 cores; the full
size is what BENCHMARKS.md reports.
"""

import argparse
import json
import os
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from benchmarks import pipeline, sweeps, training
from benchmarks.common import BENCH_DIR, machine, markdown_table, photo_set, texture_set
from src.device import configure, pick_device, resolve_workers
from src.pipeline import featurize_batch_size
from src.precision import resolve_precision

SIZES = {
    "quick": {
        "featurise_images": 64,
        "naive_images": 8,
        "data_images": 96,
        "large_photos": 4,
        "cache_images": 96,
        "memory_images": 600,
        "refine_images": 60,
        "refine_val": 12,
        "refine_epochs": 2,
        "train_steps": 3,
        "sweep_trials": 6,
        "sweep_epochs": 3,
        "sweep_seeds": (0,),
        "serving_calls": 20,
        "serving_batches": 3,
        # not in --quick: its start-up alone is about 100 s of CI's budget, and
        # tests/benchmarks/test_fuzz.py replays the whole corpus through the same target
        "fuzz_seconds": 0,
    },
    "full": {
        "featurise_images": 384,
        "naive_images": 32,
        "data_images": 320,
        "large_photos": 12,
        "cache_images": 640,
        "memory_images": 5000,
        "refine_images": 192,
        "refine_val": 32,
        "refine_epochs": 3,
        "train_steps": 6,
        "sweep_trials": 12,
        "sweep_epochs": 6,
        "sweep_seeds": (0, 1, 2),
        "serving_calls": 50,
        "serving_batches": 5,
        "fuzz_seconds": 900,  # per target: issue 24's 30 minutes
    },
}
CONF = Path(__file__).resolve().parents[1] / "conf"
SIZE = 224  # px: every benchmark but the sweeps (32 px) runs at the default resolution
BENCHMARKS = (
    "featurisation",
    "data",
    "cache",
    "refinement",
    "memory",
    "sweeps",
    "serving",
    "precision",
    "fuzzing",
)
TITLES = {
    "featurisation": "1. Featurisation, end to end vs the pure forward pass",
    "data": "2. Data pipeline alone (decode + letterbox, no model)",
    "cache": "3. Feature cache: second run vs first",
    "refinement": "4. Refinement: training images/s per epoch",
    "memory": "5. Memory: peak RSS featurising a large set",
    "sweeps": "6. Sweeps: the shipped pruner vs none, over sampler seeds",
    "serving": "7. Scoring service latency (resnet18, 224 px)",
    "precision": "8. bf16 against fp32: speed and parity (benchmarks/precision.py)",
    "fuzzing": "9. Fuzzing the image reader and the scoring request parser (benchmarks/fuzz.py)",
}


def run(names, size: str, device: torch.device) -> dict:
    configure(device)
    workers = resolve_workers("auto", device)
    s = SIZES[size]
    # the batch src.run featurises with on this device at the default resolution
    default = OmegaConf.load(CONF / "resolution" / "224.yaml")
    batch = s.get("featurise_batch") or featurize_batch_size(
        default.featurize_batch_size,
        default.get("featurize_batch_size_cpu"),
        device,
        resolve_precision("auto", device),
    )
    results = {"size": size, "machine": machine(device, workers), "benchmarks": {}}
    forward_rates = {}
    for name in names:
        started = time.perf_counter()
        print(f"--- {TITLES[name]}", flush=True)
        if name == "featurisation":
            paths, _ = texture_set(s["featurise_images"])
            rows = pipeline.featurisation(
                paths,
                ("resnet18", "resnet50"),
                SIZE,
                batch,
                workers,
                device,
                s["naive_images"],
                precision=resolve_precision("auto", device),
            )
            forward_rates = {r["model"]: r["pure forward img/s"] for r in rows}
        elif name == "data":
            paths, _ = texture_set(s["data_images"])
            rows = pipeline.data_pipeline(paths, SIZE, workers, forward_rates, s["large_photos"])
        elif name == "cache":
            paths, _ = texture_set(s["cache_images"])
            root = paths[0].parents[1]
            rows = pipeline.feature_cache(root, SIZE, batch, workers, device)
        elif name == "refinement":
            rows = refinement(s, device, workers)
        elif name == "memory":
            folder = photo_set(s["memory_images"])[0].parent
            rows = pipeline.peak_memory(folder, "resnet18", SIZE, batch, workers)
        elif name == "sweeps":
            rows = sweeps.pruned_vs_unpruned(s["sweep_trials"], s["sweep_epochs"], s["sweep_seeds"])
        elif name == "serving":
            from benchmarks.serving import serving_benchmark  # needs MLflow

            rows = serving_benchmark(
                s["serving_calls"], s["serving_batches"], BENCH_DIR / "serving-data"
            )
        elif name == "precision":
            from benchmarks import precision  # its own sizes: 224 px, three rounds

            capability, rows = precision.measure(size == "quick", 1 if size == "quick" else 3)
            results["machine"]["precision"] = capability
        elif name == "fuzzing" and not s["fuzz_seconds"]:
            rows = [{"skipped": "not in --quick; python -m benchmarks.fuzz runs it"}]
        elif name == "fuzzing":
            from benchmarks import fuzz  # needs atheris

            out = BENCH_DIR / f"fuzz-{time.strftime('%Y%m%d-%H%M%S')}"  # from the seeds
            report = fuzz.run_separately(s["fuzz_seconds"], out)
            rows = [{k: v for k, v in r.items() if k != "findings"} for r in report["rows"]]
            results["fuzz_findings"] = [path for r in report["rows"] for path in r["findings"]]
        results["benchmarks"][name] = {
            "rows": rows,
            "seconds": time.perf_counter() - started,
            "load_average_1min_after": round(os.getloadavg()[0], 2),  # others' work shows here
        }
    results["machine"]["load_average_1min_after"] = round(os.getloadavg()[0], 2)
    return results


def refinement(s: dict, device: torch.device, workers: int) -> list[dict]:
    """Per-epoch training images/s of `refine` against a training step on random pixels of
    the same model and batch (channels-last, as `refine` runs)."""
    paths, labels = texture_set(s["refine_images"])
    batch = 16  # conf/resolution/224.yaml's train_batch_size, the original's
    precision = resolve_precision("auto", device)  # what src.run trains in here by default
    ceilings = [
        training.train_step("resnet18", SIZE, batch, precision, layout, s["train_steps"], device)
        for layout in (True, False)
    ]
    epochs = training.refine_epochs(
        paths,
        labels,
        s["refine_val"],
        "resnet18",
        SIZE,
        batch,
        s["refine_epochs"],
        precision,
        device,
        workers,
    )
    ceiling = ceilings[0]["img/s"]
    rows = [
        {
            "measurement": f"train step on random pixels, channels-last={c['channels-last']}",
            "img/s": c["img/s"],
            "of the channels-last step": c["img/s"] / ceiling,
        }
        for c in ceilings
    ]
    rows += [
        {
            "measurement": f"refine epoch {e['epoch']} ({e['train images']} images, augmented)",
            "img/s": e["train img/s"],
            "of the channels-last step": e["train img/s"] / ceiling,
        }
        for e in epochs
    ]
    for r in rows:
        print(f"refinement: {r}", flush=True)
    return rows


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} "
        f"threads), device {m['device']}, {m['loader_workers']} loader worker(s) by default, "
        f"Python {m['python']}; 1-minute load average {m['load_average_1min']} before, "
        f"{m.get('load_average_1min_after', '?')} after; size: {results['size']}.",
    ]
    if "precision" in m:  # the precision benchmark's own line: what auto chose, and why
        lines.append(f"Precision benchmark: {m['precision']}.")
    for name, bench in results["benchmarks"].items():
        lines += [
            "",
            f"### {TITLES[name]}",
            "",
            markdown_table(bench["rows"]),
            "",
            f"({bench['seconds']:.0f} s; 1-minute load average {bench['load_average_1min_after']}"
            " at the end)",
        ]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="about a minute per benchmark")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated names")
    parser.add_argument("--out", default="BENCHMARKS.json", help="the JSON file to write")
    parser.add_argument("--device", default="cpu", help="cpu (the targets' machine) or auto")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; expected some of {', '.join(BENCHMARKS)}")
    results = run(names, "quick" if args.quick else "full", pick_device(args.device))
    Path(args.out).write_text(json.dumps(results, indent=2))
    print("\n" + markdown(results))
    print(f"\n(written to {args.out})")
