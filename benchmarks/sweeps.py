"""Sweep benchmark: the refinement sweep with its shipped pruner against the same sweep with
`pruner=none` (same sampler seed, same trial count), over several sampler seeds, on the
learnable colour set: trial-epochs spent, wall time, and the best validation accuracy each
reached. `python -m benchmarks.sweeps [--seeds 0,1,2] [--pruners none,shipped,...]` runs it
alone, other pruner settings included (PRUNERS), which is how the shipped one was chosen."""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from omegaconf import OmegaConf

from benchmarks.common import BENCH_DIR, markdown_table, write_colour_dataset

ROOT = Path(__file__).resolve().parents[1]
# Small enough for a 2-core machine: 32 px, random weights, resnet18, a fixed epoch count so
# that every unpruned trial runs all of them. The rest of conf/sweep/refine_dnn.yaml's space
# (learning rate, momentum, weight decay, dropout, batch size, freezing) is searched as
# shipped. The colour set is learnable from random weights, so trials differ for a reason:
# a good learning rate climbs, a poor one stays (on the textures every trial sits at chance).
SWEEP = [
    "sweep=refine_dnn",
    "dataset=folder",  # without it the default dataset generated its textures into the root
    "model=resnet18",
    "model.weights=none",
    "resolution.size=32",
    "classifier.patience=0",  # no early stopping: only the pruner ends a trial early
    "num_workers=0",
    "hydra.sweeper.sampler.n_startup_trials=4",  # of 12 trials, as the shipped 8 of 30
]
PER_CLASS = 60  # colour images per class: 27 train, 9 validation per class
# Pruner settings to compare; "shipped" is conf/sweep/refine_dnn.yaml's as it is.
PRUNERS = {
    "none": {"name": "none"},
    "shipped": None,
    "median 5/2": {"name": "median", "n_startup_trials": 5, "n_warmup_steps": 2},
    "median 2/0": {"name": "median", "n_startup_trials": 2, "n_warmup_steps": 0},
    "median 2/1": {"name": "median", "n_startup_trials": 2, "n_warmup_steps": 1},
    "median 3/0": {"name": "median", "n_startup_trials": 3, "n_warmup_steps": 0},
    "patient 0 (median 2/0)": {
        "name": "patient",
        "patience": 0,
        "wrapped": {"name": "median", "n_startup_trials": 2, "n_warmup_steps": 0},
    },
    "percentile 25 3/1": {
        "name": "percentile",
        "percentile": 25.0,
        "n_startup_trials": 3,
        "n_warmup_steps": 1,
    },
    "halving 1/3": {"name": "successive_halving", "min_resource": 1, "reduction_factor": 3},
    "halving 2/3": {"name": "successive_halving", "min_resource": 2, "reduction_factor": 3},
    "hyperband 1/3": {"name": "hyperband", "min_resource": 1, "reduction_factor": 3},
}


def pruner_overrides(pruner: dict | None) -> list[str]:
    """The overrides that turn the shipped pruner into `pruner`: its keys that `pruner` lacks
    go (~), the ones it adds come (+), the shared ones are set."""
    if pruner is None:
        return []
    shipped = OmegaConf.load(ROOT / "conf/sweep/refine_dnn.yaml").hydra.sweeper.pruner
    key = "hydra.sweeper.pruner."
    return [f"~{key}{k}" for k in shipped if k not in pruner] + [
        f"{'' if k in shipped else '+'}{key}{k}={hydra_value(v)}" for k, v in pruner.items()
    ]


def hydra_value(value) -> str:
    """A value in Hydra's override grammar: a dict as {key:value,...}."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def pruned_vs_unpruned(
    trials: int, epochs: int, seeds=(0, 1, 2), pruners=("none", "shipped")
) -> list[dict]:
    """One row per pruner and seed, then one per pruner over all seeds: its trial-epochs
    against the unpruned sweeps' and whether every seed's best equals the unpruned one's."""
    data = write_colour_dataset(BENCH_DIR / f"colours-{PER_CLASS}", PER_CLASS)
    rows = [sweep(pruner, seed, trials, epochs, data) for pruner in pruners for seed in seeds]
    return rows + summary(rows)


def summary(rows: list[dict]) -> list[dict]:
    unpruned = {r["seed"]: r for r in rows if r["pruner"] == "none"}
    totals = []
    for pruner in dict.fromkeys(r["pruner"] for r in rows):
        mine = [r for r in rows if r["pruner"] == pruner]
        spent = sum(r["trial-epochs"] for r in mine)
        totals.append(
            {
                "pruner": f"{pruner}: all seeds",
                "seed": ",".join(str(r["seed"]) for r in mine),
                "trials": sum(r["trials"] for r in mine),
                "pruned": sum(r["pruned"] for r in mine),
                "trial-epochs": spent,
                "of at most": sum(r["of at most"] for r in mine),
                "vs unpruned": spent / sum(unpruned[r["seed"]]["trial-epochs"] for r in mine)
                if all(r["seed"] in unpruned for r in mine)
                else None,
                "wall s": sum(r["wall s"] for r in mine),
                "best val class-avg accuracy": sum(r["best val class-avg accuracy"] for r in mine)
                / len(mine),
                "best equals unpruned's": all(
                    r["best val class-avg accuracy"]
                    >= unpruned[r["seed"]]["best val class-avg accuracy"]
                    for r in mine
                )
                if all(r["seed"] in unpruned for r in mine)
                else None,
            }
        )
    return totals


def sweep(pruner: str, seed: int, trials: int, epochs: int, data: Path) -> dict:
    """One sweep in a fresh study and MLflow store; its trials' accounting from the storage."""
    with tempfile.TemporaryDirectory(prefix="sweep-") as tmp:
        command = [
            sys.executable,
            "-m",
            "src.run",
            "-m",
            *SWEEP,
            *pruner_overrides(PRUNERS[pruner]),
            f"hydra.sweeper.sampler.seed={seed}",
            f"classifier.epochs={epochs}",
            f"hydra.sweeper.n_trials={trials}",
            f"dataset.root={data}",
            f"paths.sweeps_dir={tmp}/sweeps",
            f"tracking.uri=sqlite:///{tmp}/mlflow.db",
        ]
        environment = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        start = time.perf_counter()
        done = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, env=environment, check=False
        )
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"sweep with pruner {pruner} failed: {done.stderr[-3000:]}")
        study = optuna.load_study(
            study_name="refine_dnn", storage=f"sqlite:///{tmp}/sweeps/optuna.db"
        )
    states = [t.state.name for t in study.trials]
    result = {
        "pruner": pruner,
        "seed": seed,
        "trials": len(study.trials),
        "pruned": states.count("PRUNED"),
        "trial-epochs": sum(len(t.intermediate_values) for t in study.trials),
        "of at most": trials * epochs,
        "vs unpruned": None,
        "wall s": wall,
        "best val class-avg accuracy": study.best_value,
        "best equals unpruned's": None,
    }
    print(f"sweep: {result}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--pruners", default="none,shipped", help=f"of {list(PRUNERS)}")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--out", type=Path, default=None, help="JSON of the rows")
    args = parser.parse_args()
    pruners = tuple(args.pruners.split(","))
    if unknown := [p for p in pruners if p not in PRUNERS]:
        parser.error(f"--pruners: unknown {unknown}; the names are {list(PRUNERS)}")
    rows = pruned_vs_unpruned(
        args.trials, args.epochs, tuple(int(s) for s in args.seeds.split(",")), pruners
    )
    print(markdown_table(rows))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
