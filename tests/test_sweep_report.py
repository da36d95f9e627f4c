"""The sweep parent's leaderboard and its best-against-time curve, from a real study."""

import datetime

import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from src.tuning.sweep_report import best_against_time_figure, leaderboard, leaderboard_figure

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
