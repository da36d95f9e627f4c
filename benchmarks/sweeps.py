"""Sweep benchmark: the refinement sweep with the median pruner against the same sweep with
`pruner=none` (same sampler seed, same trial count) on a small synthetic set: trial-epochs
spent, wall time, and the best validation accuracy each reached."""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parents[1]
# Small enough for a 2-core machine: 48 px, random weights, resnet18, a fixed epoch count so
# that every unpruned trial runs all of them. The rest of conf/sweep/refine_dnn.yaml's space
# (learning rate, momentum, weight decay, dropout, batch size) is searched as shipped.
SWEEP = [
    "sweep=refine_dnn",
    "model=choice(resnet18)",
    "model.weights=none",
    "resolution=choice(112)",
    "resolution.size=48",
    "classifier.freeze_backbone=choice(false)",
    "classifier.batch_size=choice(8,16)",
    "classifier.patience=0",  # no early stopping: only the pruner ends a trial early
    "dataset.synthetic.images_per_class=30",
    "dataset.synthetic.image_size=96",
    "num_workers=0",
    "hydra.sweeper.sampler.seed=0",
    "hydra.sweeper.sampler.n_startup_trials=4",
]
PRUNERS = {
    "none": [  # the shipped sweep's median settings go too: the no-op pruner takes none
        "hydra.sweeper.pruner.name=none",
        "~hydra.sweeper.pruner.n_startup_trials",
        "~hydra.sweeper.pruner.n_warmup_steps",
    ],
    "median": [
        "hydra.sweeper.pruner.name=median",
        "hydra.sweeper.pruner.n_startup_trials=3",  # trials that always finish
        "hydra.sweeper.pruner.n_warmup_steps=1",  # epochs before a trial can be pruned
    ],
}


def pruned_vs_unpruned(trials: int, epochs: int, data_dir: Path) -> list[dict]:
    return [sweep(pruner, trials, epochs, data_dir) for pruner in PRUNERS]


def sweep(pruner: str, trials: int, epochs: int, data_dir: Path) -> dict:
    """One sweep in a fresh study and MLflow store; its trials' accounting from the storage."""
    with tempfile.TemporaryDirectory(prefix=f"sweep-{pruner}-") as tmp:
        command = [
            sys.executable,
            "-m",
            "src.run",
            "-m",
            *SWEEP,
            *PRUNERS[pruner],
            f"classifier.epochs=choice({epochs})",
            f"hydra.sweeper.n_trials={trials}",
            f"paths.data_dir={data_dir}",
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
            raise RuntimeError(f"sweep with pruner={pruner} failed: {done.stderr[-3000:]}")
        study = optuna.load_study(
            study_name="refine_dnn", storage=f"sqlite:///{tmp}/sweeps/optuna.db"
        )
    states = [t.state.name for t in study.trials]
    result = {
        "pruner": pruner,
        "trials": len(study.trials),
        "pruned": states.count("PRUNED"),
        "trial-epochs": sum(len(t.intermediate_values) for t in study.trials),
        "of at most": trials * epochs,
        "wall s": wall,
        "best val class-avg accuracy": study.best_value,
    }
    print(f"sweep: {result}", flush=True)
    return result
