"""A job's side of an Optuna trial, so pruning works with any Hydra launcher.

The sweeper passes the study's name, its storage URL and the trial's number into the job's
config (`trial.*`); the job opens the study itself, reports its objective after every
epoch, and stops when the pruner says so. While it runs it records heartbeats, so if the
job's process dies its trial is failed and retried by whoever is still sweeping.
"""

import contextlib
import threading
import time

import optuna

from src.classifiers.callbacks import MONITOR
from src.tuning.study import WORKER, make_pruner, open_storage


class TrialLink:
    """A trainer callback (src/classifiers/callbacks.py) that reports to the trial."""

    name = "pruner"

    def __init__(
        self,
        study_name: str,
        storage: str,
        number: int,
        pruner: dict | None,
        heartbeat_interval: int = 10,
        grace_period: int = 60,
        deadline: float | None = None,
    ):
        self.storage = open_storage(storage, heartbeat_interval, grace_period)
        self.study = optuna.load_study(
            study_name=study_name, storage=self.storage, pruner=make_pruner(pruner)
        )
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(
            self.study._study_id, number
        )
        self.trial = optuna.Trial(self.study, trial_id)
        self.trial.set_user_attr("worker", WORKER)  # the process that runs it, now
        self.pruned_at: int | None = None
        self.deadline = deadline  # Unix time: a budgeted sweep's end (src/tuning/budget.py)
        self.stopped_by_budget = False
        self._epoch_started = time.time()
        self._stop = threading.Event()
        self._heartbeat = None
        if isinstance(self.storage, optuna.storages.RDBStorage):
            self._heartbeat = threading.Thread(
                target=self._beat, args=(trial_id, heartbeat_interval), daemon=True
            )
            self._heartbeat.start()

    def __call__(self, epoch: int, metrics: dict[str, float]) -> bool:
        self.trial.report(metrics[MONITOR], epoch)
        now = time.time()
        epoch_seconds, self._epoch_started = now - self._epoch_started, now
        if self.trial.should_prune():
            self.pruned_at = epoch
            return True
        if self.deadline is not None and now + epoch_seconds > self.deadline:
            # the next epoch would end past the budget: stop as pruned, with what it reported
            self.pruned_at, self.stopped_by_budget = epoch, True
            self.trial.set_user_attr("stopped_by", "budget")
            return True
        return False

    def record_run(self, run_id: str) -> None:
        self.trial.set_user_attr("mlflow_run_id", run_id)

    def is_best_so_far(self, objective: float) -> bool:
        """Is `objective` at least as good as every COMPLETE trial's value in the study's
        storage now? Only such a trial logs its model (src/pipeline.py `finish`): ties log
        too, so whichever of them the sweep keeps (src/tracking/study_models.py) has its model.
        Trials running in parallel may both log; the sweep deletes the one superseded."""
        done = self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        values = [t.value for t in done if t.value is not None]
        if not values:
            return True
        if self.study.direction == optuna.study.StudyDirection.MINIMIZE:
            return objective <= min(values)
        return objective >= max(values)

    def close(self) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=5)

    def _beat(self, trial_id: int, interval: int) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):  # a missed beat is not worth a failed trial
                self.storage.record_heartbeat(trial_id)
            self._stop.wait(interval)
