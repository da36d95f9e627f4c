"""The search space grammar: every Hydra sweep form becomes the right Optuna distribution."""

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from src.errors import UserError
from src.tuning.search_space import (
    describe,
    grid,
    parse_search_space,
    point,
    size,
    suggest,
    untried_point,
)


def space_of(**params):
    return parse_search_space(params, []).distributions


def test_interval_is_a_float_range():
    assert space_of(x="interval(0.1, 0.9)")["x"] == FloatDistribution(0.1, 0.9)


def test_int_interval_is_an_integer_range():
    assert space_of(x="int(interval(3, 15))")["x"] == IntDistribution(3, 15)


def test_log_tag_makes_a_log_scale():
    assert space_of(x="tag(log, interval(0.0005, 0.05))")["x"] == FloatDistribution(
        0.0005, 0.05, log=True
    )
    assert space_of(x="tag(log, int(interval(8, 64)))")["x"] == IntDistribution(8, 64, log=True)


def test_choice_is_categorical_with_typed_options():
    assert space_of(x="choice(8, 16, 32)")["x"] == CategoricalDistribution([8, 16, 32])
    assert space_of(m="choice(resnet18, resnet50)")["m"].choices == ("resnet18", "resnet50")
    assert space_of(f="choice(false, true)")["f"].choices == (False, True)


def test_range_excludes_its_stop_like_python():
    assert space_of(x="range(1, 10, 2)")["x"] == IntDistribution(1, 9, step=2)
    assert space_of(x="range(0.0, 0.75, 0.25)")["x"] == FloatDistribution(0.0, 0.5, step=0.25)


def test_command_line_sweeps_join_the_params_and_plain_values_pass_through():
    space = parse_search_space({"a": "interval(0, 1)"}, ["b=choice(1,2)", "seed=3"])
    assert set(space.distributions) == {"a", "b"} and space.fixed == ["seed=3"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"x": "interval(5, 1)"}, "empty interval"),
        ({"x": "tag(log, interval(0, 1))"}, "log scale but starts at 0"),
        ({"x": "choice()"}, "cannot parse|no options"),
        ({"x": "range(5, 1, 1)"}, "empty range"),
    ],
)
def test_bad_search_spaces_are_refused_before_any_trial(params, message):
    with pytest.raises(UserError, match=message):
        parse_search_space(params, [])


def test_unknown_keys_are_refused():
    with pytest.raises(UserError, match="'classifier.lrr' is not a key or group"):
        parse_search_space({"classifier.lrr": "interval(0, 1)"}, [], known=lambda k: k == "lr")


def test_suggest_draws_one_value_per_key_within_its_distribution():
    space = parse_search_space(
        {
            "lr": "tag(log, interval(0.001, 0.1))",
            "bs": "choice(8, 16)",
            "ep": "int(interval(1, 3))",
        },
        [],
    )
    trial = optuna.create_study().ask()
    values = suggest(trial, space)
    assert 0.001 <= values["lr"] <= 0.1 and values["bs"] in (8, 16) and 1 <= values["ep"] <= 3


PARAMS = {
    "classifier.epochs": "int(interval(5, 20))",
    "classifier.lr": "tag(log, interval(0.0005, 0.05))",
    "resolution": "choice(112, 224)",
}


def test_a_plain_value_on_the_command_line_fixes_that_parameter():
    space = parse_search_space(PARAMS, ["classifier.epochs=2", "seed=1"])
    assert "classifier.epochs" not in space.distributions
    assert space.fixed == ["classifier.epochs=2", "seed=1"]
    assert set(space.distributions) == {"classifier.lr", "resolution"}


def test_sweep_grammar_on_the_command_line_replaces_that_range():
    space = parse_search_space(PARAMS, ["classifier.lr=tag(log, interval(0.001, 0.01))"])
    assert space.distributions["classifier.lr"] == FloatDistribution(0.001, 0.01, log=True)
    assert len(space.distributions) == 3 and space.fixed == []


def test_a_trials_line_shows_the_plain_values_inside_its_drawn_groups():
    space = parse_search_space(PARAMS, ["resolution.size=64", "classifier.epochs=2"])
    line = describe({"classifier.lr": 0.01, "resolution": "224"}, space.fixed)
    assert line == "classifier.lr=0.01, resolution=224 [resolution.size=64]"


def test_an_integer_interval_of_one_value_is_that_value():
    assert space_of(x="int(interval(3, 3))")["x"] == IntDistribution(3, 3)


def test_a_space_without_a_continuous_interval_counts_its_distinct_points():
    assert size(parse_search_space({"m": "choice(a, b, a)", "e": "int(interval(1, 2))"}, [])) == 4
    assert size(parse_search_space({"d": "range(0.0, 0.3, 0.1)", "s": "range(1, 10, 4)"}, [])) == 9
    assert size(parse_search_space({"m": "choice(a, b)", "lr": "interval(0.1, 1)"}, [])) is None


def test_a_point_is_the_same_however_its_values_were_computed():
    space = parse_search_space({"d": "range(0.0, 0.4, 0.1)", "m": "choice(x, y, x)"}, [])
    assert point({"d": 0.30000000000000004, "m": "x"}, space) == point({"d": 0.3, "m": "x"}, space)
    assert point({"d": 0.3, "m": "x"}, space) != point({"d": 0.2, "m": "x"}, space)
    assert point({"d": 0.25, "m": "x"}, space) is None  # between two steps: not a point
    assert point({"d": 0.3}, space) is None  # a trial of another space


def test_the_grid_lists_every_value_of_ranges_and_choices():
    space = parse_search_space({"seed": "range(0, 3)", "d": "range(0.0, 0.3, 0.1)"}, [])
    assert grid(space) == {"seed": [0, 1, 2], "d": [0.0, 0.1, 0.2]}


def test_an_untried_point_is_one_not_taken_until_none_is_left():
    space = parse_search_space({"e": "int(interval(1, 3))"}, [])
    assert untried_point(space, {(0,), (2,)}, seed=0) == {"e": 2}
    assert untried_point(space, {(0,), (1,), (2,)}, seed=0) is None
    infinite = parse_search_space({"lr": "interval(0.1, 1)"}, [])
    assert untried_point(infinite, set(), seed=0) is None
