"""Does a budgeted search beat the default run at the same wall time (issue 26)?
`python -m benchmarks.budget [--datasets textures,photos,scientific] [--seeds 3]
[--budget dnn|90s|3m] [--quick] [--out FILE]`.

On each real set (benchmarks/real_datasets.py: 3 classes, 120 training, 30 validation and
60 test crops; the validation crops are the set's own, listed through
dataset.split.val_list, from the test rows but overlapping no test crop: a random draw of
the overlapping training crops scored 0.93 on validation where test scored 0.43, and no
search can choose on that) and seed, four contenders, each in a scratch folder of its own
(its own MLflow store, feature cache and study storage: none starts warm from another's
work), all with model.weights=none (no weights can be downloaded here) and the seed:
- "default": `python -m src.run`, the linear SVM at its defaults;
- "default dnn": `python -m src.run classifier=dnn`;
- "refine_dnn": `python -m src.run -m sweep=refine_dnn hydra.sweeper.n_trials=null`, today's
  sweep, as many trials as the budget holds; its result is the run of its best complete
  trial (by validation class-averaged accuracy);
- "auto": `python -m src.run -m sweep=auto`; its result is the champion it retrains and
  registers (the run tagged sweep.champion_of_trial), and the winner's classifier, model
  and resolution are recorded.
Both sweeps get the budget B (hydra.sweeper.budget, the sampler seeded with the seed):
`--budget dnn`, the default, is the "default dnn" run's wall time on that set and seed, in
whole seconds rounded up, so a sweep gets the time the default refinement takes; else a
fixed time (90s, 3m).

Per run: its process's wall seconds and the test class-averaged accuracy of its result, and
for the default runs their validation class-averaged accuracy. For the sweeps also B, the
overrun (wall / B - 1: the process's start-up and ending count, as they do for the default
runs), the sweep's own last line (`budget 2m37s: 2m40s spent (102%), 0s left`), the trials
by state, and a timeline: each finished trial's end in seconds from the process's launch,
with the best validation class-averaged accuracy of the complete trials so far. A figure
beside the JSON (its stem, .png) draws those timelines per set against the default runs.

--quick (CI's smoke, about 3 minutes on 2 cores): textures, seed 0, B = 45 s unless
--budget says otherwise, and for speed every command at resolution.size=32 (a plain value
inside a searched group applies to whichever resolution a trial draws), "default dnn" and
"refine_dnn" also at classifier.epochs=3: 15 epochs and the refit took the default dnn run
70-160 s on 2 busy cores, and refine_dnn's drawn 5-20 epochs had its first trial cut at a
30 s budget's deadline with no trial complete. "auto" cannot take it: its sweep starts from
classifier=svm, which has no such key, and refuses it; the budget's deadline cuts its
refining trials instead.
"""

import argparse
import contextlib
import json
import math
import os
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import matplotlib
import torch
from optuna.trial import TrialState
from tqdm import tqdm

from benchmarks.common import (
    BENCH_DIR,
    finished_run,
    machine,
    markdown_table,
    scratch_keys,
    scratch_store,
)
from benchmarks.label_noise import column, failure, grouped, mean_or_none, spread
from benchmarks.real_datasets import SETS, ensure_real_datasets
from benchmarks.recipe import machine_line, run_quietly
from src.errors import UserError
from src.tuning.budget import parse_budget
from src.tuning.study import DONE, NOT_RUN, default_storage

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "budget.json"
CONTENDERS = ("default", "default dnn", "refine_dnn", "auto")
SWEEPS = {  # a sweep contender's own keys; its study is named after it (conf/sweep/)
    "refine_dnn": ["hydra.sweeper.n_trials=null"],  # as many trials as the budget holds
    "auto": [],  # n_trials null already
}
QUICK_BUDGET = "45s"
VAL_PER_CLASS = 10  # validation crops per class, of the 50 non-test ones (val_ratio's 20 %)
QUICK = {  # --quick's overrides (see the module's docstring)
    "default": ["resolution.size=32"],
    "default dnn": ["resolution.size=32", "classifier.epochs=3"],
    "refine_dnn": ["resolution.size=32", "classifier.epochs=3"],
    "auto": ["resolution.size=32"],
}
BUDGET_LINE = re.compile(r"^budget \S+: \S+ spent \((\d+)%\), \S+ left$", re.MULTILINE)
COLOURS = {"refine_dnn": "tab:blue", "auto": "tab:orange"}
MARKERS = {"default": ("s", "tab:green"), "default dnn": ("^", "tab:red")}


class ChildFailed(RuntimeError):
    """A sweep that failed, with what its study holds all the same."""

    def __init__(self, message: str, partial: dict):
        super().__init__(message)
        self.partial = partial


def keys(folder: Path, name: str, seed: int, scratch: Path, extra: list[str]) -> list[str]:
    """The overrides of every contender's command: the set, the seed, and a store, cache and
    study storage of the contender's own."""
    return [
        "dataset=folder",
        f"dataset.root={folder / 'images'}",
        f"dataset.name={name}",
        f"dataset.split.test_list={folder / 'test.tsv'}",
        f"dataset.split.val_list={folder / 'val.tsv'}",
        "model.weights=none",
        f"seed={seed}",
        *scratch_keys(scratch),
        *extra,
    ]


def command(contender: str, overrides: list[str], seed: int, budget: float | None) -> list:
    entry = [sys.executable, "-m", "src.run"]
    if contender == "default":
        return [*entry, *overrides]
    if contender == "default dnn":
        return [*entry, "classifier=dnn", *overrides]
    sweep = [f"sweep={contender}", *SWEEPS[contender], f"hydra.sweeper.budget={budget:g}s"]
    return [*entry, "-m", *sweep, f"hydra.sweeper.sampler.seed={seed}", *overrides]


def budget_seconds(option: str, dnn_seconds: float | None) -> float:
    """B: the default dnn run's wall seconds rounded up (`dnn`), or a time (90s, 3m)."""
    if option != "dnn":
        return parse_budget(option)
    if dnn_seconds is None:
        raise RuntimeError("no budget: the default dnn run failed")
    return math.ceil(dnn_seconds)


def overrun(seconds: float, budget: float) -> float:
    """How far past its budget a sweep's process ran, as a share of the budget."""
    return seconds / budget - 1


def spent_line(stdout: str) -> dict:
    """The sweep's own last word on its budget, and the share of it that it says it spent."""
    found = list(BUDGET_LINE.finditer(stdout))
    if not found:
        return {"budget_line": None, "spent_share": None}
    return {"budget_line": found[-1][0], "spent_share": int(found[-1][1]) / 100}


def timeline(trials, launched: float) -> list[dict]:
    """Each trial that ran to an end (complete or pruned), by its end: seconds from the
    process's launch (Unix time), and the best complete value so far (None before one)."""
    ended = sorted(
        (
            t
            for t in trials
            if t.state in DONE and t.datetime_complete and not t.user_attrs.get(NOT_RUN)
        ),
        key=lambda t: t.datetime_complete,
    )
    best, points = None, []
    for t in ended:
        if t.state == TrialState.COMPLETE and t.value is not None:
            best = t.value if best is None else max(best, t.value)
        seconds = t.datetime_complete.timestamp() - launched  # Optuna's times are local, naive
        points.append({"trial": t.number, "state": t.state.name, "seconds": round(seconds, 1)})
        points[-1]["best"] = best
    return points


def run_default(contender, folder, name, seed, scratch, extra) -> dict:
    """A default run: its wall seconds and its test and validation class-averaged accuracy."""
    overrides = keys(folder, name, seed, scratch, extra)
    seconds, stdout = run_quietly(command(contender, overrides, seed, None))
    run_id, metrics = finished_run(stdout, scratch)
    return {
        "run_id": run_id,
        "seconds": round(seconds, 1),
        "test_class_avg_accuracy": metrics["test/class_avg_accuracy"],
        "val_class_avg_accuracy": metrics["val/class_avg_accuracy"],
    }


def run_sweep(contender, folder, name, seed, scratch, extra, budget: float) -> dict:
    """A budgeted sweep: its time against the budget, its trials, and its result's accuracy."""
    overrides = keys(folder, name, seed, scratch, extra)
    launched = time.time()
    try:
        seconds, stdout = run_quietly(command(contender, overrides, seed, budget))
    except RuntimeError as error:
        partial = {"seconds": round(time.time() - launched, 1), "budget_seconds": budget}
        with contextlib.suppress(KeyError):  # KeyError: it stopped before it made its study
            partial.update(study_record(contender, scratch, launched))
        raise ChildFailed(str(error), partial) from None
    record = {
        "seconds": round(seconds, 1),
        "budget_seconds": budget,
        "overrun": round(overrun(seconds, budget), 3),
        **spent_line(stdout),
        **study_record(contender, scratch, launched),
    }
    try:
        record.update(sweep_result(contender, scratch))
    except RuntimeError as error:
        raise ChildFailed(str(error), record) from None
    return record


def study_record(contender: str, scratch: Path, launched: float) -> dict:
    """The sweep's trials by state (those told FAIL without running as NOT_RUN), and its
    timeline."""
    import optuna

    study = optuna.load_study(study_name=contender, storage=default_storage(scratch / "sweeps"))
    trials = study.get_trials(deepcopy=False)
    states = Counter(NOT_RUN.upper() if t.user_attrs.get(NOT_RUN) else t.state.name for t in trials)
    return {"trials": dict(states), "timeline": timeline(trials, launched)}


def sweep_result(contender: str, scratch: Path) -> dict:
    """refine_dnn: the run of its best complete trial; auto: the champion it registered,
    and the winning trial's mode, model and resolution."""
    import optuna
    from mlflow.tracking import MlflowClient

    study = optuna.load_study(study_name=contender, storage=default_storage(scratch / "sweeps"))
    client = MlflowClient(scratch_store(scratch))
    if contender == "refine_dnn":
        complete = [
            t for t in study.get_trials(states=(TrialState.COMPLETE,)) if t.value is not None
        ]
        if not complete:
            raise RuntimeError("no complete trial within the budget")
        best = max(complete, key=lambda t: t.value)
        run_id = best.user_attrs["mlflow_run_id"]
        found = {"best_trial": best.number}
    else:
        experiments = [e.experiment_id for e in client.search_experiments()]
        champions = client.search_runs(experiments, "tags.`sweep.champion_of_trial` != ''")
        if not champions:
            raise RuntimeError("no champion run in the sweep's store")
        run_id = champions[0].info.run_id
        best = study.trials[int(champions[0].data.tags["sweep.champion_of_trial"])]
        found = {"best_trial": best.number}
        found["winner"] = {k: best.params.get(k) for k in ("classifier", "model", "resolution")}
    return {
        **found,
        "run_id": run_id,
        "val_class_avg_accuracy": best.value,  # the trial's: the champion retrains on validation
        "test_class_avg_accuracy": client.get_run(run_id).data.metrics["test/class_avg_accuracy"],
    }


def run_all(folders: dict, seeds, budget: str, extra: dict, scratch: Path, progress) -> list:
    """Per set and seed the four contenders in turn, the sweeps given the budget; a failed
    child is recorded (its error, and a sweep's study all the same) and the rest go on."""
    runs = []
    for name, folder in folders.items():
        for seed in seeds:
            dnn_seconds = None
            for contender in CONTENDERS:
                step = {"dataset": name, "seed": seed, "contender": contender}
                record = dict(step)
                where = scratch / f"{name}-seed{seed}-{contender.replace(' ', '-')}"
                arguments = (contender, folder, name, seed, where, extra[contender])
                try:
                    if contender in SWEEPS:
                        record.update(run_sweep(*arguments, budget_seconds(budget, dnn_seconds)))
                    else:
                        record.update(run_default(*arguments))
                except RuntimeError as error:
                    record.update(getattr(error, "partial", {}))
                    record["error"] = failure(error, step)
                if contender == "default dnn" and "error" not in record:
                    dnn_seconds = record["seconds"]
                runs.append(record)
                progress.update(1)
    return runs


def table(runs: list[dict]) -> list[dict]:
    """One row per dataset and contender: means over its seeds (their range in brackets)."""
    rows = []
    for (dataset, contender), done, seeds in grouped(runs, "contender"):
        overruns = [v for v in column(done, "overrun") if v is not None]
        rows.append(
            {
                "dataset": dataset,
                "contender": contender,
                "seeds": seeds,
                "test class-avg acc": spread(column(done, "test_class_avg_accuracy")),
                "val class-avg acc": spread(column(done, "val_class_avg_accuracy")),
                "wall s": spread(column(done, "seconds"), 0),
                "budget s": spread(column(done, "budget_seconds"), 0),
                "max overrun": f"{max(overruns):+.0%}" if overruns else "n/a",
                "trials complete": spread([trial_count(r, "COMPLETE") for r in done], 1),
                "trials pruned": spread([trial_count(r, "PRUNED") for r in done], 1),
            }
        )
    return rows


def trial_count(run: dict, state: str) -> int | None:
    return run["trials"].get(state, 0) if "trials" in run else None


def verdicts(runs: list[dict]) -> list[str]:
    """Per dataset: the contender(s) with the best mean test accuracy, whether auto is one,
    and auto's largest overrun of its budget."""
    lines = []
    for dataset in dict.fromkeys(r["dataset"] for r in runs):
        done = [r for r in runs if r["dataset"] == dataset and "error" not in r]
        means = {
            c: mean_or_none(
                column([r for r in done if r["contender"] == c], "test_class_avg_accuracy")
            )
            for c in CONTENDERS
        }
        overruns = [r["overrun"] for r in done if r["contender"] == "auto" and "overrun" in r]
        late = f"auto's max overrun {max(overruns):+.0%}" if overruns else "auto's overrun n/a"
        scored = {c: m for c, m in means.items() if m is not None}
        if not scored:
            lines.append(f"{dataset}: no contender has a test accuracy; {late}.")
            continue
        top = max(scored.values())
        best = [c for c, m in scored.items() if math.isclose(m, top)]
        if "auto" in best:
            auto = "auto is the best" + (" (tied)" if len(best) > 1 else "")
        elif means["auto"] is None:
            auto = "auto has no result"
        else:
            auto = f"auto is not ({means['auto']:.3f})"
        lines.append(
            f"{dataset}: best mean test class-avg accuracy {top:.3f}: {', '.join(best)}; "
            f"{auto}; {late}."
        )
    return lines


def figure(runs: list[dict], path: Path) -> None:
    """Per dataset: the best validation accuracy so far against elapsed time, a thin line per
    sweep and seed, the default runs as markers, the mean budget as a vertical line."""
    datasets = list(dict.fromkeys(r["dataset"] for r in runs))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        mine = [r for r in runs if r["dataset"] == dataset]
        for r in mine:
            if r["contender"] in SWEEPS:
                points = [
                    (p["seconds"], p["best"])
                    for p in r.get("timeline", [])
                    if p["best"] is not None
                ]
                if points:  # held to the process's end
                    end = (max(r["seconds"], points[-1][0]), points[-1][1])
                    xs, ys = zip(*points, end, strict=True)
                    colour = COLOURS[r["contender"]]
                    ax.step(xs, ys, where="post", lw=1, color=colour, label=r["contender"])
            elif r.get("val_class_avg_accuracy") is not None:
                marker, colour = MARKERS[r["contender"]]
                x, y = r["seconds"], r["val_class_avg_accuracy"]
                ax.plot(x, y, marker, color=colour, label=f"{r['contender']} run")
        budgets = [r["budget_seconds"] for r in mine if r.get("budget_seconds")]
        if budgets:
            mean = sum(budgets) / len(budgets)
            ax.axvline(mean, color="grey", ls="--", lw=1, label=f"budget (mean {mean:.0f} s)")
        ax.set(
            title=f"{dataset}: best validation accuracy against time",
            xlabel="seconds since the command started",
            ylabel="best validation class-averaged accuracy so far",
        )
        handles, labels = ax.get_legend_handles_labels()
        once = {label: handle for handle, label in zip(handles, labels, strict=True)}  # per seed
        ax.legend(once.values(), once.keys(), fontsize="small", loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.budget", description=__doc__)
    parser.add_argument("--datasets", default=",".join(SETS), help="comma-separated names")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per dataset")
    parser.add_argument("--budget", help="dnn (the default run's time; default) or 90s, 3m, ...")
    parser.add_argument("--quick", action="store_true", help="textures, seed 0, small and fast")
    parser.add_argument("--out", type=Path, help="the JSON file to write (and .png beside it)")
    args = parser.parse_args(argv)
    budget = args.budget or (QUICK_BUDGET if args.quick else "dnn")
    if budget != "dnn":
        try:
            parse_budget(budget)
        except UserError as error:
            parser.error(f"--budget: {error}")
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    unknown = sorted(set(names) - set(SETS))
    if unknown:
        parser.error(f"unknown dataset(s) {unknown}; expected some of {', '.join(SETS)}")
    names, seeds = (names[:1], range(1)) if args.quick else (names, range(args.seeds))
    out = args.out or (
        Path(tempfile.gettempdir()) / "budget_quick.json" if args.quick else DEFAULT_OUT
    )
    extra = QUICK if args.quick else {c: [] for c in CONTENDERS}

    info = machine(torch.device("cpu"), 0)
    folders = ensure_real_datasets(BENCH_DIR / "real-datasets", names, val_per_class=VAL_PER_CLASS)
    started = time.perf_counter()
    progress = tqdm(total=len(names) * len(seeds) * len(CONTENDERS), unit="run")
    with tempfile.TemporaryDirectory(prefix="budget-") as tmp:
        runs = run_all({n: folders[n] for n in names}, seeds, budget, extra, Path(tmp), progress)
    progress.close()
    info["load_average_1min_after"] = round(os.getloadavg()[0], 2)
    minutes = (time.perf_counter() - started) / 60

    tables = {
        "per dataset": table(runs),
        "all datasets": table([{**r, "dataset": "all"} for r in runs]),
    }
    found = verdicts(runs)
    given = "the default dnn run's wall time, per set and seed" if budget == "dnn" else budget
    lines = [
        machine_line(info),
        "",
        f"Budget: {given}; seeds {list(seeds)}; random-weight backbones"
        + (f"; --quick overrides {extra}" if args.quick else "")
        + f"; {len(runs)} runs in {minutes:.1f} min. Test class-averaged accuracy: mean over "
        "seeds (min-max); overrun: the sweep's wall time / budget - 1; trials: per sweep.",
    ]
    for title, rows in tables.items():
        lines += ["", f"### {title}", "", markdown_table(rows)]
    lines += ["", *found]
    print("\n".join(lines))
    out.parent.mkdir(parents=True, exist_ok=True)
    results = {
        "machine": info,
        "settings": {
            "datasets": names,
            "seeds": list(seeds),
            "budget": budget,
            "quick": args.quick,
            "keys": keys(Path("<set>"), "<name>", 0, Path("<scratch>"), []),
            "extra": extra,
            "sweep_keys": SWEEPS,
        },
        "minutes": round(minutes, 1),
        "runs": runs,
        "tables": tables,
        "verdicts": found,
    }
    out.write_text(json.dumps(results, indent=2))
    figure(runs, out.with_suffix(".png"))
    print(f"\n(written to {out} and {out.with_suffix('.png')})")


if __name__ == "__main__":
    main()
