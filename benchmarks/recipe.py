"""Our refinement against torchvision's reference training script, on real photos:
`python -m benchmarks.recipe [--reference PATH] [--datasets textures,photos,scientific]
[--seeds 3] [--epochs 5] [--size 96] [--batch 16] [--lr 0.005] [--precision auto,fp32]
[--variant NAME=override,...] [--quick] [--out FILE]`.

Both sides train resnet18 from random weights for the same epochs, batch, learning rate,
cosine schedule, SGD momentum 0.9 and weight decay 5e-4, at the same side in pixels, on the
same training images, and are tested on the same test images (benchmarks/real_datasets.py):
imgsweep through `python -m src.run classifier=dnn` as a user runs it, the reference through
`benchmarks/reference_run.py`. Each side keeps the rest of its own recipe: imgsweep its
validation split, choice of epoch and augmentation (conf/classifier/dnn.yaml, as shipped
unless a --variant changes it); the reference trains on every training image with
RandomResizedCrop and flips and is tested at its last epoch, always in fp32 (it has no CPU
bf16). Speed is training images/s, the mean over the epochs after the first (the first warms
up); a run's ratio is against the reference run just before it, on the same dataset and
seed: the sides take turns, so a busy machine slows both.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from tqdm import tqdm

from benchmarks.common import BENCH_DIR, machine, markdown_table
from benchmarks.real_datasets import SETS, ensure_real_datasets
from src.precision import NATIVE_BF16_CPU_FLAGS, cpu_flags

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "recipe.json"
MODEL = "resnet18"
MOMENTUM, WEIGHT_DECAY = 0.9, 5e-4  # conf/classifier/dnn.yaml's, given to the reference too


def imgsweep_command(dataset: Path, size, epochs, batch, lr, seed, precision, tmp: Path, extra):
    return [
        sys.executable,
        "-m",
        "src.run",
        "classifier=dnn",
        "dataset=folder",
        f"dataset.root={dataset / 'images'}",
        f"dataset.split.test_list={dataset / 'test.tsv'}",
        "model.weights=none",
        "resolution=112",
        f"resolution.size={size}",
        f"classifier.epochs={epochs}",
        f"classifier.batch_size={batch}",
        f"classifier.lr={lr}",
        f"seed={seed}",
        f"precision={precision}",
        "num_workers=0",  # the reference's --workers 0: both decode between batches
        f"tracking.uri=sqlite:///{tmp}/mlflow.db",
        f"paths.data_dir={tmp}/data",
        f"paths.mlruns_dir={tmp}/mlruns",
        f"paths.sweeps_dir={tmp}/sweeps",
        "tracking.system_metrics=false",
        *extra,
    ]


def reference_command(reference: str, dataset: Path, size, epochs, batch, lr, seed):
    return [
        sys.executable,
        "-m",
        "benchmarks.reference_run",
        "--reference",
        reference,
        "--seed",
        str(seed),
        "--",
        "--data-path",
        str(dataset / "reference"),
        "--model",
        MODEL,
        "--device",
        "cpu",
        "-b",
        str(batch),
        "--epochs",
        str(epochs),
        "--lr",
        str(lr),
        "--momentum",
        str(MOMENTUM),
        "--wd",
        str(WEIGHT_DECAY),
        "--lr-scheduler",
        "cosineannealinglr",
        "--workers",
        "0",
        "--train-crop-size",
        str(size),
        "--val-resize-size",
        str(size),
        "--val-crop-size",
        str(size),
        "--output-dir",
        "",  # empty: no checkpoint files (two of 45 MB after every epoch)
    ]


def run_imgsweep(dataset: Path, settings: dict, seed: int, precision: str, extra) -> dict:
    from mlflow.tracking import MlflowClient  # only here: the reference side does not need it

    with tempfile.TemporaryDirectory(prefix="recipe-imgsweep-") as tmp:
        command = imgsweep_command(
            dataset, **settings, seed=seed, precision=precision, tmp=tmp, extra=extra
        )
        seconds, _ = run_quietly(command)
        client = MlflowClient(f"sqlite:///{tmp}/mlflow.db")
        (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
        history = client.get_metric_history(run.info.run_id, "time/train_images_per_second")
        return {
            "precision_used": run.data.params.get("precision"),
            "test_accuracy": run.data.metrics["test/accuracy"],
            "test_class_avg_accuracy": run.data.metrics["test/class_avg_accuracy"],
            "train_images_per_second": [m.value for m in sorted(history, key=lambda m: m.step)],
            "seconds": seconds,
        }


def run_reference(reference: str, dataset: Path, settings: dict, seed: int) -> dict:
    command = reference_command(reference, dataset, **settings, seed=seed)
    seconds, stdout = run_quietly(command)
    reported = json.loads(stdout.strip().splitlines()[-1])  # its last line, by contract
    # no CPU bf16 in the reference script: it always trains in fp32
    return {"precision_used": "fp32", **reported, "seconds": seconds}


def run_quietly(command: list[str]) -> tuple[float, str]:
    """Wall seconds and stdout of `command`; its stderr is shown only if it fails."""
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=child_env())
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started, done.stdout


def child_env() -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)  # each imgsweep run has a store of its own
    return env


def typical_rate(per_epoch: list[float]) -> float:
    """Training images/s of a run: the epochs after the first (which warms up), or the one."""
    return statistics.mean(per_epoch[1:] or per_epoch)


def plan(names, seeds, variants: dict, precisions, with_reference: bool) -> list[dict]:
    """Every run, in the order they take turns: per dataset and seed, the reference first."""
    steps = []
    for name in names:
        for seed in seeds:
            if with_reference:
                steps.append({"dataset": name, "seed": seed, "side": "reference"})
            for variant in variants:
                for precision in precisions:
                    steps.append(
                        {
                            "dataset": name,
                            "seed": seed,
                            "side": "imgsweep",
                            "variant": variant,
                            "precision": precision,
                        }
                    )
    return steps


def with_ratios(runs: list[dict]) -> list[dict]:
    """Each run's img/s against the reference run of its dataset and seed (None without)."""
    reference = {(r["dataset"], r["seed"]): r["img/s"] for r in runs if r["side"] == "reference"}
    return [
        {**r, "vs reference": ratio(r["img/s"], reference.get((r["dataset"], r["seed"])))}
        for r in runs
    ]


def ratio(rate: float, baseline: float | None) -> float | None:
    return rate / baseline if baseline else None


def table(runs: list[dict]) -> list[dict]:
    """One row per side, variant and precision: medians and means over its runs."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        key = (r["side"], r.get("variant", ""), r.get("precision", "fp32"), r["precision_used"])
        groups.setdefault(key, []).append(r)
    rows = []
    for (side, variant, requested, used), group in groups.items():
        accuracy = [r["test_accuracy"] for r in group]
        ratios = [r["vs reference"] for r in group if r["vs reference"] is not None]
        rows.append(
            {
                "side": side if side == "reference" else f"imgsweep {variant}",
                "precision": used if requested == used else f"{requested} ({used})",
                "runs": len(group),
                "train img/s (median)": statistics.median(r["img/s"] for r in group),
                "speed vs reference (median)": statistics.median(ratios) if ratios else "-",
                "test accuracy (mean)": statistics.mean(accuracy),
                "min-max": f"{min(accuracy):.3f}-{max(accuracy):.3f}",
                "class-avg accuracy (mean)": statistics.mean(
                    r["test_class_avg_accuracy"] for r in group
                ),
                "wall s (median)": statistics.median(r["seconds"] for r in group),
            }
        )
    return rows


def parse_variants(specs: list[str]) -> dict[str, list[str]]:
    """`NAME=override1,override2` each (commas inside [] or {} belong to a value); `default`,
    with no extra overrides, comes first unless a spec names it."""
    variants = {"default": []}
    for spec in specs:
        name, sep, overrides = spec.partition("=")
        if not sep or not name:
            raise SystemExit(f"--variant {spec!r}: expected NAME=override1,override2")
        variants[name] = split_overrides(overrides)
    return variants


def split_overrides(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        depth += (char in "[{") - (char in "]}")
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [p.strip() for p in [*parts, current] if p.strip()]


def machine_line(info: dict) -> str:
    native = sorted(cpu_flags().intersection(NATIVE_BF16_CPU_FLAGS))
    return (
        f"Machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']} "
        f"({info['torch_threads']} threads); /proc/cpuinfo lists avx512_bf16: "
        f"{'yes' if 'avx512_bf16' in native else 'no'} (native bf16 flags: {native or 'none'}); "
        f"1-minute load average {info['load_average_1min']} before, "
        f"{info.get('load_average_1min_after', '?')} after."
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.recipe", description=__doc__)
    parser.add_argument("--reference", help="torchvision's references/classification folder")
    parser.add_argument("--datasets", default=",".join(SETS), help="comma-separated names")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per dataset")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--size", type=int, default=96, help="px, the side both sides train at")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=0.005)
    parser.add_argument("--precision", default="auto", help="imgsweep's, comma-separated")
    parser.add_argument(
        "--variant", action="append", default=[], help="NAME=override,...: imgsweep overrides"
    )
    parser.add_argument("--quick", action="store_true", help="one dataset, one seed, 1 epoch")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON file to write")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    unknown = sorted(set(names) - set(SETS))
    if unknown:
        parser.error(f"unknown dataset(s) {unknown}; expected some of {', '.join(SETS)}")
    if args.reference and not (Path(args.reference) / "train.py").is_file():
        parser.error(f"--reference {args.reference}: no train.py there")
    seeds, epochs = (range(1), 1) if args.quick else (range(args.seeds), args.epochs)
    names = names[:1] if args.quick else names
    variants = parse_variants(args.variant)
    precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    settings = {"size": args.size, "epochs": epochs, "batch": args.batch, "lr": args.lr}

    info = machine(torch.device("cpu"), 0)
    folders = ensure_real_datasets(BENCH_DIR / "real-datasets", names)
    runs = []
    for step in tqdm(plan(names, seeds, variants, precisions, bool(args.reference)), unit="run"):
        folder = folders[step["dataset"]]
        if step["side"] == "reference":
            result = run_reference(args.reference, folder, settings, step["seed"])
        else:
            extra = variants[step["variant"]]
            result = run_imgsweep(folder, settings, step["seed"], step["precision"], extra)
        runs.append({**step, **result, "img/s": typical_rate(result["train_images_per_second"])})
    info["load_average_1min_after"] = round(os.getloadavg()[0], 2)

    runs = with_ratios(runs)
    tables = {name: table([r for r in runs if r["dataset"] == name]) for name in names}
    tables["all datasets"] = table(runs)
    lines = [machine_line(info), ""]
    if not args.reference:
        lines += ["Reference not given (--reference PATH): imgsweep only.", ""]
    lines.append(
        f"resnet18 from random weights, {epochs} epoch(s), batch {args.batch}, lr {args.lr}, "
        f"{args.size} px, seeds {list(seeds)}; variants: "
        + "; ".join(f"{k}: {' '.join(v) or 'as shipped'}" for k, v in variants.items())
    )
    for name, rows in tables.items():
        lines += ["", f"### {name}", "", markdown_table(rows)]
    print("\n".join(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = {
        "machine": info,
        "reference": args.reference,
        "settings": {
            **settings,
            "seeds": list(seeds),
            "variants": variants,
            "precisions": precisions,
        },
        "runs": runs,
        "tables": tables,
    }
    args.out.write_text(json.dumps(results, indent=2))
    print(f"\n(written to {args.out})")


if __name__ == "__main__":
    main()
