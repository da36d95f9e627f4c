"""The main job: `python -m src.run [key=value ...]` (add -m for a sweep).

Hydra composes conf/ into one config; `describe_run` (src/run_spec.py) turns it into a typed,
frozen `RunSpec`, and `src.pipeline.run_job` runs that: data → features → classifier →
evaluation, recorded in one MLflow run. The return value (validation class-averaged
accuracy) is what sweepers maximise.

This file stays light: the command line is checked before torch, MLflow and Optuna are
imported, so a mistake comes back as one line in about a second, before any experiment or
run exists: a mistyped key or option (src/override_check.py), then every value and the
dataset folder of the job it asks for (`check_config`, src/run_spec.py).
"""

import sys

import hydra
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from src.errors import UserError, exit_with_error
from src.features.model_options import register_model_options
from src.override_check import first_job, problem, swept_values
from src.overrides import hydra_overrides, prepare_overrides

# Hydra's flags that print something and run no job: their config is not checked
RUNS_NO_JOB = {"--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--shell-completion"}

register_model_options()  # model=NAME for every torchvision model, before anything composes


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    return run_config(cfg)


def run_config(cfg: DictConfig) -> float:
    """The job of a composed config (also src.label_issues's, under its own hydra.main:
    Hydra finds conf/ from the file of the function it decorates, run as __main__)."""
    from src.pipeline import run_job  # the heavy imports, once the command line is sound
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
    if not RUNS_NO_JOB & set(args):
        from src.run_spec import check_config, check_value  # numpy, OpenCV: not for a typo

        try:
            check_config(first_job(overrides), overrides)
            for key, option in swept_values(overrides):
                check_value(key, option)
        except UserError as error:
            exit_with_error(error)
        except (HydraException, OmegaConfBaseException) as error:  # e.g. `+seed=1`: already there
            exit_with_error(str(error).splitlines()[0])
    return args


if __name__ == "__main__":
    sys.argv[1:] = start(sys.argv[1:])
    main()
