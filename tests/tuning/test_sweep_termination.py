"""A sweep always ends: on any finite space the sweep's own ask/tell loop (src/tuning/
sweep_loop.py) runs every point at most once to completion, runs every point when n_trials
allows, and stops. Jobs are a cheap stand-in launcher, not training runs."""

import itertools
import logging
import threading
from unittest import mock

import optuna
from hydra.core.utils import JobReturn, JobStatus
from hypothesis import given, settings
from hypothesis import strategies as st
from optuna.trial import TrialState

from src.tuning import sweep_loop
from src.tuning.search_space import grid, parse_search_space, point, size
from src.tuning.study import NOT_RUN, make_sampler

optuna.logging.set_verbosity(optuna.logging.ERROR)  # the grid sampler's "re-evaluating" warning


class Launcher:
    """Hydra's launcher as the sweep loop uses it: each job's value comes from its point;
    the points in `failing` fail, as a run that raises would."""

    def __init__(self, study, space, failing=frozenset()):
        self.study, self.space, self.failing, self.ran = study, space, failing, []

    def launch(self, jobs, initial_job_idx):
        (job,) = jobs
        number = int(next(o for o in job if o.startswith("trial.number=")).split("=")[1])
        here = point(self.study.trials[number].params, self.space)
        self.ran.append(here)
        if here in self.failing:
            return [JobReturn(status=JobStatus.FAILED, _return_value=RuntimeError("bad point"))]
        return [JobReturn(status=JobStatus.COMPLETED, _return_value=hash(here) % 97 / 97)]


def sweep(params: dict, n_trials: int, sampler: str, failing=frozenset(), seconds=20):
    """Run the sweep loop on an in-memory study; returns (study, launcher, context)."""
    space = parse_search_space(params, [])
    config = {"name": sampler, "seed": 0, **({"n_startup_trials": 2} if sampler == "tpe" else {})}
    study = optuna.create_study(
        direction="maximize", sampler=make_sampler(config, space, grid(space))
    )
    launcher = Launcher(study, space, failing)
    context = {
        "sweeper": mock.Mock(launcher=launcher, settings={"storage": "memory"}),
        "study": study,
        "space": space,
        "n_trials": n_trials,
        "seed": 0,
        "uri": None,
        "parent": None,
        "max_failures": n_trials,
        "failures": [0],
        "lock": threading.Lock(),
        "stop": threading.Event(),
        "errors": [],
        "lost": None,
        "exhausted": False,
        "budget": None,  # no hydra.sweeper.budget
    }
    with mock.patch.object(sweep_loop, "_refresh"):  # the parent run's figures: no MLflow here
        loop = threading.Thread(target=sweep_loop._trials, args=(context,), daemon=True)
        loop.start()
        loop.join(seconds)
        context["stop"].set()
        ended = not loop.is_alive()
        loop.join(5)
    assert ended, (
        f"the sweep did not end in {seconds} s: {len(study.trials)} trials, "
        f"{sum(t.state == TrialState.FAIL for t in study.trials)} failed, ran {launcher.ran}"
    )
    return study, launcher, context


def every_point(params: dict) -> set:
    space = parse_search_space(params, [])
    values = grid(space)
    return {
        point(dict(zip(values, p, strict=True)), space) for p in itertools.product(*values.values())
    }


# Small finite spaces in the sweep grammar: choices of 1-3 options (repeats allowed), integer
# intervals of 1-4 values, integer and float ranges
choices = st.lists(st.integers(0, 3), min_size=1, max_size=3).map(
    lambda v: f"choice({', '.join(map(str, v))})"
)
int_intervals = st.tuples(st.integers(-2, 5), st.integers(0, 3)).map(
    lambda a: f"int(interval({a[0]}, {a[0] + a[1]}))"
)
ranges = st.sampled_from(["range(1, 5, 2)", "range(0, 3)", "range(0.0, 0.3, 0.1)"])
spaces = st.dictionaries(
    st.sampled_from(["a", "b", "c"]), st.one_of(choices, int_intervals, ranges), min_size=1
)


@settings(max_examples=40, deadline=None)
@given(
    params=spaces,
    extra=st.integers(-3, 3),
    sampler=st.sampled_from(["tpe", "random", "grid"]),
)
def test_a_sweep_on_a_finite_space_ends_and_runs_each_point_once(params, extra, sampler):
    total = size(parse_search_space(params, []))
    n_trials = max(1, total + extra)
    study, launcher, context = sweep(params, n_trials, sampler)
    assert len(launcher.ran) == len(set(launcher.ran)), f"a point ran twice: {launcher.ran}"
    assert len(launcher.ran) == min(n_trials, total)
    if n_trials >= total:
        assert set(launcher.ran) == every_point(params)
        assert context["exhausted"] is (n_trials > total)
    skipped = [t for t in study.trials if t.user_attrs.get(NOT_RUN)]
    assert len(skipped) <= len(launcher.ran)  # each repeat is followed by an untried point
    assert not context["errors"]


@settings(max_examples=15, deadline=None)
@given(params=spaces, sampler=st.sampled_from(["tpe", "random", "grid"]), data=st.data())
def test_a_sweep_with_failing_points_ends_and_completes_no_point_twice(params, sampler, data):
    points = sorted(every_point(params))
    failing = frozenset(data.draw(st.lists(st.sampled_from(points), max_size=2)))
    study, launcher, _ = sweep(params, len(points) + 2, sampler, failing)
    completed = [p for p in launcher.ran if p not in failing]
    assert len(completed) == len(set(completed)) == len(points) - len(failing)


def test_the_issue_command_stops_at_its_two_points_with_one_line(caplog):
    """`classifier.epochs=int(interval(1,2))` with n_trials=4 recorded 2,031 failed trials
    in 100 s and never ended: every ask after the second repeated a point."""
    with caplog.at_level(logging.INFO, logger="imgsweep.sweep"):
        study, launcher, _ = sweep({"classifier.epochs": "int(interval(1,2))"}, 4, "tpe")
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert sorted(t.params["classifier.epochs"] for t in complete) == [1, 2]
    assert (
        "sweep: all 2 points of the search space have been tried; stopping at 2 of 4 trials"
        in caplog.messages
    )
    assert len(study.trials) <= 4


def test_a_two_option_choice_with_four_trials_runs_each_option_once():
    study, launcher, _ = sweep({"m": "choice(a, b)"}, 4, "random")
    assert sorted(t.params["m"] for t in study.trials if t.state == TrialState.COMPLETE) == [
        "a",
        "b",
    ]


def test_the_grid_sampler_takes_ranges():
    """It failed each trial with `The parameter name, seed, is not found in the given grid`."""
    study, launcher, _ = sweep({"seed": "range(0, 3)", "m": "choice(a, b)"}, 10, "grid")
    assert sorted((t.params["seed"], t.params["m"]) for t in study.trials) == sorted(
        itertools.product(range(3), "ab")
    )
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 6
