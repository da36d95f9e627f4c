"""`python -m src.lr_find [the same overrides as src.run]`: the learning-rate range test.

On the configured data, model and augmentation (classifier=dnn unless another refining
classifier is given), logged as its own MLflow run with lr_find.png; prints the suggested
rate and the `src.run` command that uses it. See src/classifiers/lr_finder.py.
"""

import json
import shlex
import sys
from pathlib import Path

import hydra
import mlflow
from omegaconf import DictConfig, OmegaConf

from src.classifiers.distributed import SINGLE
from src.classifiers.lr_finder import DIVISOR
from src.device import pick_device
from src.errors import UserError, exit_with_error
from src.features.backbone import build_featurizer, check_model, feature_size
from src.features.model_options import register_model_options
from src.modes.auto_lr import log_range_test, range_test_settings, run_range_test
from src.overrides import as_typed
from src.run_spec import RunSpec, describe_run
from src.tracking import mlflow_run

register_model_options()  # model=NAME for every torchvision model: before hydra.main composes


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    try:
        find(describe_run(cfg))
    except UserError as error:
        exit_with_error(error)


def find(spec: RunSpec) -> float:
    # src.run's own helpers: the same data, split and job as a run with these overrides
    from src.pipeline import dataset_root, make_job, prepare, set_up

    if spec.mode.refinement is None:
        raise UserError("the lr range test refines a network: add classifier=dnn")
    uri = mlflow_run.resolve_uri(spec.tracking.uri, Path.cwd())
    mlflow_run.check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    arch = spec.model.arch
    check_model(arch, spec.image.size)
    device = pick_device(spec.compute.device)
    workers, precision = set_up(spec, device, SINGLE)
    root = dataset_root(spec.data)
    experiment = spec.tracking.experiment
    experiment_id = mlflow_run.experiment_id(uri, experiment)
    name = f"lr_find-{spec.model.name}-{spec.image.size}px"
    tags = {
        "classifier": spec.mode.name,
        "model": spec.model.name,
        "dataset": experiment,
        "lr_find": "true",
    }
    with mlflow_run.tracked_run(experiment_id, name, tags) as run:
        config = spec.tracking.config
        mlflow_run.log_config(config, OmegaConf.to_yaml(config))
        data = prepare(spec, root, workers)
        featurizer, _ = build_featurizer(arch, spec.model.weights, spec.image.size)
        job = make_job(spec, data, device, workers, precision)
        found = run_range_test(
            job,
            featurizer,
            spec.mode.refinement,
            spec.mode.dropout,
            feature_size(arch),
            range_test_settings(spec.mode.lr_find),
        )
        log_range_test(found)
    # The finder's own settings (classifier.lr_find.*) mean nothing once lr is a number.
    overrides = [
        as_typed(o)
        for o in json.loads(spec.tracking.command)
        if not o.startswith(("classifier.lr=", "classifier.lr_find."))
    ]
    if not any(o.startswith("classifier=") for o in overrides):
        overrides.insert(0, "classifier=dnn")
    command = shlex.join(
        ["python", "-m", "src.run", *overrides, f"classifier.lr={found.suggested:.3g}"]
    )
    print(
        f"\nsuggested learning rate: {found.suggested:.3g} (lowest smoothed loss "
        f"at {found.suggested * DIVISOR:.3g}, divided by {DIVISOR}; {len(found.lrs)} steps"
        + (", stopped at divergence" if found.stopped_early else "")
        + ")\n"
        f"  plot: lr_find.png of run {run.info.run_id}, "
        f"{mlflow_run.runs_url(uri, run.info.experiment_id, run.info.run_id)}\n"
        f"  train with it: {command}\n"
        "  (or classifier.lr=auto: the test runs inside the training run)"
    )
    return found.suggested


if __name__ == "__main__":
    from src.run import start  # the same command-line check as src.run

    args = sys.argv[1:]
    if not any(a.startswith("classifier=") for a in args):
        args = ["classifier=dnn", *args]  # the test is about refining
    sys.argv[1:] = start(args)
    main()
