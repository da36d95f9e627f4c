"""A sweep's wall-clock budget (`hydra.sweeper.budget=30m`): how much is left, and whether a
trial still fits in it.

The time spent is the wall time during which any sweep process worked on the study: each
process records its own session, [start, now], in the study's storage (a user attribute of
its own, so no two processes write one key), and the spent time is the length of the union
of all sessions. So a Ctrl-C and a rerun go on with what was left, and two workers on one
storage spend one budget together, as a wall clock does. A session starts when its process
does: the start-up, some 10 s of imports and checks, is the user's wait too.

A new trial starts only if the rest of the budget can hold it: as long as the longest trial
that finished so far (a first trial always starts). A running trial gets a deadline: after
each epoch it stops (pruned, with what it reported so far) when its next epoch would end past
it (src/tuning/trial_link.py). A trial without epochs (the SVM) cannot be stopped midway; the
estimate keeps it from starting where it would not fit.

With `finish`, the winner runs once more after the trials (src/tuning/finish.py), so the
budget keeps time for it: the current best trial's champion run (`reserve`). And a trial's
deadline leaves room for its own champion run, should it win: a `dnn` trial that may use t
seconds costs t + 2.25 t if it wins (the same run, then the retrain on train + validation).
Without that, the last trial to start could run to the budget's end, win, and be run again
past it: a 3-minute sweep=auto once ended 66 % over.
"""

import math
import re
import time

import optuna
import psutil
from optuna.trial import TrialState

from src.errors import UserError
from src.tuning.study import NOT_RUN, WORKER

SESSION = "budget.session."  # + the worker and its start: [start, last seen] in Unix seconds
UNITS = {"s": 1, "m": 60, "h": 3600}
# s a champion's run spends before it trains (a new process: torch, MLflow, the data's
# checks), on top of its trial's time; ~10 s measured on 2 cores, plus a margin
CHAMPION_START = 15.0
START_UP = 60.0  # s at most of a process's life before the sweep that its session counts


def parse_budget(text) -> float | None:
    """Seconds of `90s`, `30m`, `1.5h` (None for null); UserError naming the value else."""
    if text is None:
        return None
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh])\s*", str(text))
    seconds = float(found[1]) * UNITS[found[2]] if found else 0.0
    if not seconds:
        raise UserError(
            f"hydra.sweeper.budget={text}: expected a positive time such as 90s, 30m or 2h"
        )
    return seconds


def union_length(intervals: list[tuple[float, float]]) -> float:
    """The length of the union of [start, end] intervals (overlaps counted once)."""
    total, reach = 0.0, -math.inf
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


class Budget:
    """This process's session of a budgeted sweep on `study`."""

    def __init__(
        self,
        study: optuna.Study,
        seconds: float,
        clock=time.time,
        finish=False,
        mode_of=None,
        start: float | None = None,
    ):
        self.study, self.seconds, self.clock = study, seconds, clock
        self.finish = finish  # the winner's run comes after the trials: time kept for it
        # a trial's params -> its classifier mode (the champion's cost depends on it)
        self.mode_of = mode_of or (lambda params: str(params.get("classifier", "")))
        self.start = clock() if start is None else max(start, clock() - START_UP)
        self.key = f"{SESSION}{WORKER}.{self.start:.3f}"

    def record(self) -> None:
        """Write this session's interval, up to now, to the study."""
        self.study.set_user_attr(self.key, [self.start, self.clock()])

    def spent(self) -> float:
        """Seconds of the budget spent, every session's (this one's up to now) together."""
        sessions = [
            tuple(value)
            for key, value in self.study.user_attrs.items()
            if key.startswith(SESSION) and key != self.key
        ]
        return union_length([*sessions, (self.start, self.clock())])

    def left(self) -> float:
        return self.seconds - self.spent()

    def trial_estimate(self) -> float | None:
        """Seconds the longest finished trial took, pruned ones too (each ran an epoch at
        least; without them a sweep whose trials were all pruned had no estimate and
        started trials until its budget was spent). None: none has finished yet."""
        durations = [duration(t) for t in self._finished((TrialState.COMPLETE, TrialState.PRUNED))]
        return max(durations) if durations else None

    def reserve(self) -> float:
        """Seconds kept for the winner's run: the current best trial's champion run."""
        complete = self._complete()
        if not self.finish or not complete:
            return 0.0
        best = (max if self.study.direction.name == "MAXIMIZE" else min)(
            complete, key=lambda t: t.value
        )
        return CHAMPION_START + champion_factor(self.mode_of(best.params)) * duration(best)

    def trial_deadline(self, params: dict) -> float:
        """The Unix time by which a trial with `params`, starting now, must end: the budget's
        end less the current best's reserve, and, with `finish`, early enough that its own
        champion run still fits should it win."""
        left = self.left()
        allowed = left - self.reserve()
        if self.finish:
            own = (left - CHAMPION_START) / (1 + champion_factor(self.mode_of(params)))
            allowed = min(allowed, own)
        return self.clock() + max(allowed, 0.0)

    def _complete(self) -> list:
        return self._finished((TrialState.COMPLETE,))

    def _finished(self, states: tuple) -> list:
        return [
            t
            for t in self.study.get_trials(deepcopy=False, states=states)
            if t.datetime_start and t.datetime_complete and not t.user_attrs.get(NOT_RUN)
        ]

    def fits(self) -> tuple[bool, str]:
        """Whether a new trial may start, and if not, why (one line)."""
        left, estimate = self.left() - self.reserve(), self.trial_estimate()
        kept = f" beyond the {shown(self.reserve())} kept for the champion" if self.finish else ""
        if left <= 0:
            return False, f"the budget of {shown(self.seconds)} is spent{kept}"
        if estimate is not None and estimate > left:
            return False, (
                f"{shown(left)} of the budget left{kept}, and a trial takes up to {shown(estimate)}"
            )
        return True, ""


def process_start() -> float:
    """The Unix time this process started."""
    return psutil.Process().create_time()


def duration(trial) -> float:
    return (trial.datetime_complete - trial.datetime_start).total_seconds()


def champion_factor(mode: str) -> float:
    """A champion's run as a multiple of its trial's time: the same run, and for `dnn` then
    the retrain on train + validation (refit: 1.25x the images, for at most as many epochs
    as the trial ran). `svm_dnn_refined` keeps refit off (its SVM chooses C on validation)."""
    return 2.25 if mode == "dnn" else 1.0


def shown(seconds: float) -> str:
    """90 → 1m30s, 45.2 → 45s, 3720 → 1h02m."""
    seconds = max(0, round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"
