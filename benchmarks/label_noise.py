"""How well `python -m src.label_issues` finds planted label noise, and what removing what it
flags gives back: `python -m benchmarks.label_noise [--datasets textures,photos,scientific]
[--seeds 3] [--noise 0.05,0.1,0.2] [--quick] [--out FILE]`.

On each real set (benchmarks/real_datasets.py: 3 classes, 50 training and 20 test crops
each) and seed, a share of the non-test images is given a wrong label: each to a random other
class (5, 10, 20 %), and in a harder "confusable" case (10 %) every flip from class k to the
one class the clean set is most confused with: the suggested label that the clean run's
out-of-fold list (label_issues.csv) gives most often for k's images, ties and classes with
nothing flagged decided by the clean run's mean held-out probability of the class over k's
test images (predictions_test.json; the out-of-fold probabilities of unflagged images are
not logged). The test images (test.tsv, always the test split through
`dataset.split.test_list`) stay clean. A noisy set is a folder of hard links, a flipped image
in the wrong class folder, each file named `<true class>__<name>`.

Per noisy set, `python -m src.label_issues` (svm, model.weights=none, the default resolution
224 unless --resolution says otherwise, the seed) gives the flagged images: precision and
recall of the flagged non-test images against the planted flips, and how many test images
it flagged (all false: the test set is clean); that run's test class-averaged accuracy is
"noisy". "removed": the noisy set less every
flagged non-test image, through `python -m src.run` with the same keys. "oracle": the clean
set's run (the label-issues run on it, whose test accuracy is that of `src.run`: the list is
made after the classifier; its flags are the false alarms on clean labels), one per set and
seed. Recovery = (removed - noisy) / (oracle - noisy), where oracle > noisy.
"""

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from benchmarks.common import BENCH_DIR, finished_run, machine, markdown_table, scratch_keys
from benchmarks.real_datasets import SETS, ensure_real_datasets, link
from benchmarks.recipe import machine_line, run_quietly
from src.data.split import read_test_list

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "label_noise.json"
CONFUSABLE_SHARE = 0.1
QUICK_SHARE = 0.1
RESOLUTION = [None]  # --resolution: an option of conf/resolution/ (None: the default run's)
SEPARATOR = "__"  # between the true class and the file's own name in a noisy set


def read_set(folder: Path) -> tuple[dict[str, str], set[str], list[str]]:
    """A real set's images (relpath -> class), its test relpaths and its classes."""
    images = folder / "images"
    truth = {p.relative_to(images).as_posix(): p.parent.name for p in images.glob("*/*.jpg")}
    test = read_test_list(folder / "test.tsv", set(truth))
    return dict(sorted(truth.items())), test, sorted(set(truth.values()))


def plant_noise(
    truth: dict[str, str], test: set[str], share: float, rng, targets: dict | None = None
) -> dict[str, str]:
    """Each image's given label: round(share x the non-test images) of them, drawn at random,
    get another class than theirs (`targets[true class]`, else a random other class)."""
    classes = sorted(set(truth.values()))
    candidates = sorted(set(truth) - test)
    flipped = rng.choice(len(candidates), size=round(share * len(candidates)), replace=False)
    given = dict(truth)
    for i in sorted(flipped):
        relpath = candidates[i]
        others = [c for c in classes if c != truth[relpath]]
        given[relpath] = targets[truth[relpath]] if targets else str(rng.choice(others))
    return given


def noisy_layout(truth: dict[str, str], given: dict[str, str]) -> dict[str, str]:
    """Relpath in the noisy set -> the source relpath: `<given>/<true>__<name>`, unique."""
    return {f"{given[r]}/{truth[r]}{SEPARATOR}{Path(r).name}": r for r in truth}


def write_set(images: Path, files: dict[str, str], test: set[str], out: Path) -> Path:
    """out/images/ of hard links to `images`' files (noisy relpath -> source relpath) and
    out/test.tsv naming the noisy relpaths in `test`; returns `out`."""
    for relpath, source in files.items():
        (out / "images" / relpath).parent.mkdir(parents=True, exist_ok=True)
        link(images / source, out / "images" / relpath)
    lines = [f"{r.split('/')[0]}\t{r}\n" for r in sorted(files) if r in test]
    (out / "test.tsv").write_text("".join(lines))
    return out


def confusable_targets(classes: list[str], rows: list[dict], predictions: dict) -> dict:
    """Per class k, the class its images are most confused with on the clean set: the
    out-of-fold list's most frequent suggestion for k, then the mean held-out probability."""
    counts: dict[tuple, int] = {}
    for row in rows:
        if row["reason"] == "out-of-fold":
            key = (row["given_label"], row["suggested_label"])
            counts[key] = counts.get(key, 0) + 1
    columns = predictions["columns"]
    table = [dict(zip(columns, r, strict=True)) for r in predictions["data"]]

    def mean_probability(k, j):
        values = [r[f"p_{j}"] for r in table if r["true_label"] == k]
        return statistics.mean(values) if values else 0.0

    return {
        k: max(
            (j for j in classes if j != k),
            key=lambda j: (counts.get((k, j), 0), mean_probability(k, j)),
        )
        for k in classes
    }


def detection(flagged: set[str], flipped: set[str], test: set[str]) -> dict:
    """Precision and recall of the flagged non-test images against the flipped ones."""
    flagged_train = flagged - test
    hits = len(flagged_train & flipped)
    return {
        "flipped": len(flipped),
        "flagged": len(flagged_train),
        "flagged_test": len(flagged & test),
        "true_flags": hits,
        "precision": hits / len(flagged_train) if flagged_train else None,
        "recall": hits / len(flipped) if flipped else None,
    }


def recovery(noisy, removed, oracle) -> float | None:
    """The share of the accuracy that noise cost which removing the flagged images won back."""
    if None in (noisy, removed, oracle) or oracle <= noisy:
        return None
    return (removed - noisy) / (oracle - noisy)


def imgsweep_command(module: str, folder: Path, name: str, seed: int, scratch: Path) -> list:
    return [
        sys.executable,
        "-m",
        module,
        "dataset=folder",
        f"dataset.root={folder / 'images'}",
        f"dataset.name={name}",
        f"dataset.split.test_list={folder / 'test.tsv'}",
        "model.weights=none",
        *([f"resolution={RESOLUTION[0]}"] if RESOLUTION[0] else []),  # else the default, 224
        f"seed={seed}",
        *scratch_keys(scratch),
    ]


def run_imgsweep(module: str, folder: Path, name: str, seed: int, scratch: Path) -> dict:
    """One child run: its test class-averaged accuracy, and for src.label_issues the list."""
    seconds, stdout = run_quietly(imgsweep_command(module, folder, name, seed, scratch))
    run_id, metrics = finished_run(stdout, scratch)
    result = {
        "run_id": run_id,
        "seconds": round(seconds, 1),
        "test_class_avg_accuracy": metrics["test/class_avg_accuracy"],
    }
    if module == "src.label_issues":
        last = stdout.strip().splitlines()[-1]  # by contract, what was found and where
        result["label_issues_line"] = last
        if "; list: " not in last:
            raise RuntimeError(f"no label-issues list: {last}")
        listed = Path(last.split("; list: ", 1)[1])  # artifacts/label_issues/label_issues.csv
        with listed.open(newline="", encoding="utf-8") as handle:
            result["rows"] = list(csv.DictReader(handle))
        predictions = listed.parents[1] / "evaluation" / "predictions_test.json"
        result["predictions"] = json.loads(predictions.read_text())
    return result


def cases(shares: list[float], quick: bool) -> list[dict]:
    """The noise cases: each share at random, then the confusable one (not in --quick)."""
    if quick:
        return [{"noise": f"{QUICK_SHARE:.0%}", "share": QUICK_SHARE, "confusable": False}]
    found = [{"noise": f"{s:.0%}", "share": s, "confusable": False} for s in shares]
    found.append(
        {
            "noise": f"{CONFUSABLE_SHARE:.0%} confusable",
            "share": CONFUSABLE_SHARE,
            "confusable": True,
        }
    )
    return found


def run_case(source: Path, name: str, seed: int, case: dict, clean: dict, scratch: Path) -> dict:
    """Plant one case's noise, find it, remove what was flagged and train again."""
    truth, test, _ = read_set(source)
    rng = np.random.default_rng([seed, round(case["share"] * 1000), int(case["confusable"])])
    targets = clean.get("confusable_targets") if case["confusable"] else None
    if case["confusable"] and not targets:
        raise RuntimeError("no confusable classes: the clean run failed")
    given = plant_noise(truth, test, case["share"], rng, targets)
    files = noisy_layout(truth, given)
    flipped = {r for r, s in files.items() if given[s] != truth[s]}
    noisy_test = {r for r, s in files.items() if s in test}
    label = f"{name}-{case['noise'].replace('%', 'pct').replace(' ', '-')}-seed{seed}"
    noisy = write_set(source / "images", files, noisy_test, scratch / "sets" / label)
    found = run_imgsweep("src.label_issues", noisy, f"label-noise-{label}", seed, scratch)
    flagged = {row["path"] for row in found["rows"]}
    record = {
        **detection(flagged, flipped, noisy_test),
        "accuracy_noisy": found["test_class_avg_accuracy"],
        "label_issues_line": found["label_issues_line"],
        "seconds_noisy": found["seconds"],
    }
    kept = {r: s for r, s in files.items() if r not in flagged - noisy_test}
    removed = write_set(source / "images", kept, noisy_test, scratch / "sets" / f"{label}-removed")
    trained = run_imgsweep("src.run", removed, f"label-noise-{label}-removed", seed, scratch)
    record["accuracy_removed"] = trained["test_class_avg_accuracy"]
    record["seconds_removed"] = trained["seconds"]
    return record


def run_clean(source: Path, name: str, seed: int, scratch: Path) -> dict:
    """The oracle: the clean set's label-issues run (its flags are false alarms)."""
    truth, test, classes = read_set(source)
    found = run_imgsweep("src.label_issues", source, f"label-noise-{name}-clean", seed, scratch)
    flagged = {row["path"] for row in found["rows"]}
    return {
        **detection(flagged, set(), test),
        "accuracy_oracle": found["test_class_avg_accuracy"],
        "confusable_targets": confusable_targets(classes, found["rows"], found["predictions"]),
        "label_issues_line": found["label_issues_line"],
        "seconds": found["seconds"],
    }


def run_all(folders: dict, seeds, noise_cases: list[dict], scratch: Path, progress) -> list:
    """Per set and seed the clean run, then each noise case; a failed child is recorded (its
    error and tail) and the rest go on."""
    runs = []
    for name, folder in folders.items():
        for seed in seeds:
            step = {"dataset": name, "seed": seed}
            try:
                clean = run_clean(folder, name, seed, scratch)
            except RuntimeError as error:
                clean = {"error": failure(error, step)}
            runs.append({**step, "noise": "0% (clean)", **clean})
            progress.update(1)
            for case in noise_cases:
                record = {**step, "noise": case["noise"], "share": case["share"]}
                try:
                    record.update(run_case(folder, name, seed, case, clean, scratch))
                except RuntimeError as error:
                    record["error"] = failure(error, {**step, "noise": case["noise"]})
                else:
                    record["accuracy_oracle"] = clean.get("accuracy_oracle")
                    record["recovery"] = recovery(
                        record["accuracy_noisy"],
                        record["accuracy_removed"],
                        clean.get("accuracy_oracle"),
                    )
                runs.append(record)
                progress.update(2)
    return runs


def failure(error: Exception, step: dict) -> str:
    """Print a failed run's tail above the progress bar; the text recorded for it."""
    text = f"{type(error).__name__}: {error}"[-3000:]
    tqdm.write(f"failed {step}:\n{text}")
    return text


def spread(values: list, digits: int = 3) -> str:
    """Mean over seeds and its range, or "n/a" where no seed has a value."""
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    mean = statistics.mean(values)
    if len(values) == 1 or min(values) == max(values):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def table(runs: list[dict]) -> list[dict]:
    """One row per dataset and noise case: means over its seeds (their range in brackets).
    "recovery of means" is the recovery of the mean accuracies: steadier than the mean
    recovery, whose seeds divide by a loss of a test image or two."""
    rows = []
    for (dataset, noise), done, seeds in grouped(runs, "noise"):
        means = [
            mean_or_none(column(done, f"accuracy_{k}")) for k in ("noisy", "removed", "oracle")
        ]
        rows.append(
            {
                "dataset": dataset,
                "noise": noise,
                "seeds": seeds,
                "flipped": spread(column(done, "flipped"), 1),
                "flagged": spread(column(done, "flagged"), 1),
                "flagged test": spread(column(done, "flagged_test"), 1),
                "precision": spread(column(done, "precision")),
                "recall": spread(column(done, "recall")),
                "acc noisy": spread(column(done, "accuracy_noisy")),
                "acc removed": spread(column(done, "accuracy_removed")),
                "acc oracle": spread(column(done, "accuracy_oracle")),
                "recovery": spread(column(done, "recovery"), 2),
                "recovery of means": spread([recovery(*means)], 2),
            }
        )
    return rows


def grouped(runs: list[dict], case: str) -> list[tuple[tuple, list[dict], str]]:
    """Runs by (dataset, run[case]) in their order: the key, the runs without an error, and
    how many seeds that is ("3", or "2 (1 failed)")."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["dataset"], r[case]), []).append(r)
    found = []
    for key, group in groups.items():
        done = [r for r in group if "error" not in r]
        failed = len(group) - len(done)
        found.append((key, done, f"{len(done)}" + (f" ({failed} failed)" if failed else "")))
    return found


def column(runs: list[dict], key: str) -> list:
    return [r.get(key) for r in runs]


def mean_or_none(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.mean(values) if values else None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.label_noise", description=__doc__)
    parser.add_argument("--datasets", default=",".join(SETS), help="comma-separated names")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per dataset")
    parser.add_argument("--noise", default="0.05,0.1,0.2", help="shares flipped at random")
    parser.add_argument("--quick", action="store_true", help="one dataset, one seed, 10 %% only")
    parser.add_argument("--out", type=Path, help="the JSON file to write")
    parser.add_argument("--resolution", help="resolution=OPTION for every run (default: none)")
    args = parser.parse_args(argv)
    RESOLUTION[0] = args.resolution
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    unknown = sorted(set(names) - set(SETS))
    if unknown:
        parser.error(f"unknown dataset(s) {unknown}; expected some of {', '.join(SETS)}")
    shares = [float(s) for s in args.noise.split(",") if s.strip()]
    if not all(0 < s < 1 for s in shares):
        parser.error(f"--noise {args.noise}: expected shares between 0 and 1")
    names, seeds = (names[:1], range(1)) if args.quick else (names, range(args.seeds))
    out = args.out or (
        Path(tempfile.gettempdir()) / "label_noise_quick.json" if args.quick else DEFAULT_OUT
    )
    noise_cases = cases(shares, args.quick)

    info = machine(torch.device("cpu"), 0)
    folders = ensure_real_datasets(BENCH_DIR / "real-datasets", names)
    started = time.perf_counter()
    progress = tqdm(total=len(names) * len(seeds) * (1 + 2 * len(noise_cases)), unit="run")
    with tempfile.TemporaryDirectory(prefix="label-noise-") as tmp:
        runs = run_all({n: folders[n] for n in names}, seeds, noise_cases, Path(tmp), progress)
    progress.close()
    info["load_average_1min_after"] = round(os.getloadavg()[0], 2)
    minutes = (time.perf_counter() - started) / 60

    tables = {
        "per dataset": table(runs),
        "all datasets": table([{**r, "dataset": "all"} for r in runs]),
    }
    lines = [
        machine_line(info),
        "",
        f"svm on resnet18 random-weight features, {args.resolution or 'default (224)'} px; "
        f"seeds {list(seeds)}; "
        f"{len(runs)} cases in {minutes:.1f} min. Means over seeds (min-max). "
        "precision/recall: flagged non-test images against the planted flips; "
        "accuracies: test class-averaged.",
    ]
    for title, rows in tables.items():
        lines += ["", f"### {title}", "", markdown_table(rows)]
    print("\n".join(lines))
    out.parent.mkdir(parents=True, exist_ok=True)
    results = {
        "machine": info,
        "settings": {
            "datasets": names,
            "seeds": list(seeds),
            "cases": noise_cases,
            "keys": imgsweep_command("src.run", Path("<set>"), "<name>", 0, Path("<scratch>"))[3:],
        },
        "minutes": round(minutes, 1),
        "runs": runs,
        "tables": tables,
    }
    out.write_text(json.dumps(results, indent=2))
    print(f"\n(written to {out})")


if __name__ == "__main__":
    main()
