"""The Hydra side of the sweeper: its config schema and the Sweeper class Hydra finds.

Hydra imports every module under `hydra_plugins` at start-up, for every run; so this file
stays light, and the work (Optuna, MLflow) is imported only when a sweep starts.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from omegaconf import OmegaConf


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.imgsweep_optuna.sweeper.OptunaSweeper"
    study_name: Any = None  # null: the sweep config's name (sweep=refine_dnn → refine_dnn)
    storage: Any = None  # null: sqlite:///<paths.sweeps_dir>/optuna.db; or postgresql://..., x.log
    direction: str = "maximize"  # the objective is validation class-averaged accuracy
    # the study's total: a rerun runs only the trials still missing; a finite space (no
    # continuous interval) stops sooner, once each of its points has run
    n_trials: Any = 20  # null: no count, the budget alone ends the sweep
    # wall-clock time the study may take, all sweep processes together: 90s, 30m, 2h (null:
    # none); a rerun goes on with what is left (src/tuning/budget.py)
    budget: Any = None
    # true: once the trials are done, the best configuration runs again, retrained on train +
    # validation, scored on test once, registered as <register_name>@champion (src/tuning/finish.py)
    finish: bool = False
    register_name: Any = None  # null: the experiment's name
    n_jobs: int = 1  # trials in flight at once (more than 1 needs e.g. hydra/launcher=joblib)
    max_failure_rate: float = 0.25  # stop once more than this share of n_trials has failed
    heartbeat_interval: int = 10  # s between a running trial's heartbeats (RDB storages)
    grace_period: int = 60  # s without a heartbeat before a trial counts as dead
    sampler: Any = field(default_factory=lambda: {"name": "tpe", "seed": 0})
    pruner: Any = field(default_factory=lambda: {"name": "median"})
    params: Any = field(default_factory=dict)  # key: Hydra sweep grammar, e.g. interval(0, 1)
    # "key=value" of a searched choice: keys searched only in trials that draw that value
    conditional: Any = field(default_factory=dict)
    # values that go first: every combination of the other choices with them, queued before
    # the sampler draws (sweep=auto: {classifier: svm}, the cheap trials)
    first: Any = None


ConfigStore.instance().store(
    group="hydra/sweeper", name="imgsweep_optuna", node=OptunaSweeperConf, provider="imgsweep"
)


class OptunaSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        self.settings = {
            k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
            for k, v in settings.items()
        }
        self.hydra_context = self.config = self.launcher = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        # not at the top: Hydra imports all of hydra_plugins at every start
        from src.deployment.registry import register_run
        from src.tuning.sweep_loop import run_sweep

        # the registry is deployment's, beside tuning: the entry point hands it over
        return run_sweep(self, arguments, register=register_run)
