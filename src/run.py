"""The main job: `python -m src.run [key=value ...]` (add -m for a sweep).

Hydra composes conf/ into one config; `describe_run` (src/run_spec.py) turns it into a typed,
frozen `RunSpec`, and `src.pipeline.run_job` runs that: data → features → classifier →
evaluation, recorded in one MLflow run. The return value (validation class-averaged
accuracy) is what sweepers maximise.

This file stays light: the command line is checked (one line for a mistyped key or option)
before torch, MLflow and Optuna are imported, so a mistake comes back in about a second.
"""

import sys

import hydra
from omegaconf import DictConfig

from src.errors import exit_with_error
from src.features.model_options import register_model_options
from src.override_check import problem
from src.overrides import hydra_overrides, prepare_overrides

register_model_options()  # model=NAME for every torchvision model, before anything composes


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    # the heavy imports, once the command line is sound
    from src.pipeline import run_job
    from src.run_spec import describe_run, is_sweep_job

    return run_job(lambda: describe_run(cfg), sweeping=is_sweep_job())


def start(args: list[str]) -> list[str]:
    """The command line as Hydra will see it, or exit with one line saying what is wrong."""
    args = prepare_overrides(args)
    overrides = hydra_overrides(args)
    if overrides is None:  # --config-dir or the like: a config of the user's own
        return args
    if any(o.startswith("resume=") for o in overrides):
        from src.resume_command import with_logged_overrides

        args = with_logged_overrides(args, overrides)
        overrides = hydra_overrides(args)
    if message := problem(overrides):
        exit_with_error(message)
    return args


if __name__ == "__main__":
    sys.argv[1:] = start(sys.argv[1:])
    main()
