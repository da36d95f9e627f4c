"""The sweep parent's leaderboard and its best-against-time curve, from a real study."""

import datetime

import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from src.override_check import CONF_DIR
from src.tuning.sweep_report import (
    against_default,
    best_against_time_figure,
    default_point,
    leaderboard,
    leaderboard_figure,
    summary,
)

START = datetime.datetime(2026, 12, 7, 12, 0, 0)
MODELS = ("resnet18", "resnet50")


def trial(number, model, resolution, value, minutes):
    return optuna.trial.FrozenTrial(
        number=number,
        state=TrialState.COMPLETE,
        value=value,
        datetime_start=START + datetime.timedelta(minutes=minutes),
        datetime_complete=START + datetime.timedelta(minutes=minutes + 2),
        params={"model": model, "resolution": resolution},
        distributions={
            "model": CategoricalDistribution(MODELS),
            "resolution": CategoricalDistribution((112, 224)),
        },
        user_attrs={},
        system_attrs={},
        intermediate_values={},
        trial_id=number,
    )


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(MODELS), st.sampled_from((112, 224)), st.floats(0, 1)),
        min_size=1,
        max_size=12,
    ),
    st.sampled_from(["maximize", "minimize"]),
)
def test_each_group_holds_its_best_trial_best_group_first(trials, direction):
    study = optuna.create_study(direction=direction)
    for number, (model, resolution, value) in enumerate(trials):
        study.add_trial(trial(number, model, resolution, value, 3 * number))
    board = leaderboard(study.trials, study.direction)
    pick = max if direction == "maximize" else min
    assert sum(row["trials"] for row in board) == len(trials)
    for row in board:
        members = [(v, n) for n, (m, r, v) in enumerate(trials) if f"{m} / {r}" == row["group"]]
        assert row["best_value"] == pick(v for v, _ in members)
        assert trials[row["best_trial"]][2] == row["best_value"]
        assert row["hours"] == pytest.approx(len(members) * 2 / 60)
    values = [row["best_value"] for row in board]
    assert values == sorted(values, reverse=direction == "maximize")
    assert board[0]["best_value"] == study.best_value


def test_the_pictures_are_drawn(tmp_path):
    study = optuna.create_study(direction="maximize")
    for number, (model, value) in enumerate([("resnet18", 0.6), ("resnet50", 0.8)]):
        study.add_trial(trial(number, model, 224, value, 5 * number))
    leaderboard_figure(leaderboard(study.trials, study.direction), tmp_path / "board.png")
    best_against_time_figure(study.trials, study.direction, tmp_path / "curve.png")
    assert (tmp_path / "board.png").stat().st_size > 5000
    assert (tmp_path / "curve.png").stat().st_size > 5000


def test_the_default_point_is_the_default_runs_choice_of_each_searched_group():
    searched = ["classifier", "model", "resolution", "classifier.lr"]
    config = CONF_DIR / "config.yaml"
    assert list(default_point(searched, config).items()) == [
        ("classifier", "svm"),
        ("model", "resnet18"),
        ("resolution", "224"),
    ]
    assert default_point(["classifier.lr"], config) == {}


def test_the_summary_says_how_far_the_best_is_ahead_of_the_default_configuration():
    study = optuna.create_study(direction="maximize")
    for number, (model, resolution, value) in enumerate(
        [("resnet50", 112, 0.9), ("resnet18", 224, 0.75), ("resnet18", 112, 0.8)]
    ):
        study.add_trial(trial(number, model, resolution, value, 3 * number))
    default = {"model": "resnet18", "resolution": "224"}
    assert against_default(study, default).endswith("is trial 1: 0.7500; the best is +0.1500 on it")
    lines = summary(study, ["seed=1"], default=default).splitlines()
    assert lines[1] == "best trial 0: value 0.9000"
    assert lines[3].startswith("the default configuration (model=resnet18, resolution=224")
    assert lines[4].startswith("reproduce it: ")
    # not run, or not the same point (another model): no line
    assert against_default(study, {"model": "resnet34", "resolution": "224"}) is None
    assert against_default(study, {}) is None
    assert len(summary(study, ["seed=1"]).splitlines()) == len(lines) - 1
