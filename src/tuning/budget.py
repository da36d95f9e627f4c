"""A sweep's wall-clock budget (`hydra.sweeper.budget=30m`): how much is left, and whether a
trial still fits in it.

The time spent is the wall time during which any sweep process worked on the study: each
process records its own session, [start, now], in the study's storage (a user attribute of
its own, so no two processes write one key), and the spent time is the length of the union
of all sessions. So a Ctrl-C and a rerun go on with what was left, and two workers on one
storage spend one budget together, as a wall clock does.

A new trial starts only if the rest of the budget can hold it: as long as the longest trial
that finished so far (a first trial always starts). A running trial gets a deadline, the
budget's end: after each epoch it stops (pruned, with what it reported so far) when its next
epoch would end past it (src/tuning/trial_link.py). A trial without epochs (the SVM) cannot
be stopped midway; the estimate keeps it from starting where it would not fit.
"""

import math
import re
import time

import optuna
from optuna.trial import TrialState

from src.errors import UserError
from src.tuning.study import NOT_RUN, WORKER

SESSION = "budget.session."  # + the worker and its start: [start, last seen] in Unix seconds
UNITS = {"s": 1, "m": 60, "h": 3600}


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

    def __init__(self, study: optuna.Study, seconds: float, clock=time.time, finish=False):
        self.study, self.seconds, self.clock = study, seconds, clock
        self.finish = finish  # the winner's run comes after the trials: time kept for it
        self.start = clock()
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

    def deadline(self) -> float:
        """The Unix time at which the budget runs out, as things stand now."""
        return self.clock() + self.left()

    def trial_estimate(self) -> float | None:
        """Seconds the longest finished trial took (None: none has finished yet)."""
        durations = [
            (t.datetime_complete - t.datetime_start).total_seconds()
            for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.datetime_start and t.datetime_complete and not t.user_attrs.get(NOT_RUN)
        ]
        return max(durations) if durations else None

    def reserve(self) -> float:
        """Seconds kept for the winner's run: trained as its trial, then retrained on train +
        validation, about two of the longest trials."""
        return 2 * (self.trial_estimate() or 0) if self.finish else 0.0

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


def shown(seconds: float) -> str:
    """90 → 1m30s, 45.2 → 45s, 3720 → 1h02m."""
    seconds = max(0, round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"
