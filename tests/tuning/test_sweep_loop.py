"""A study is continued only with the search space it was drawn from."""

import optuna

from src.tuning.search_space import parse_search_space, suggest
from src.tuning.sweep_loop import changed_space

PARAMS = {"classifier.lr": "tag(log, interval(0.0005, 0.05))", "model": "choice(a, b)"}


def study_drawn_from(space) -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    suggest(trial, space)
    study.tell(trial, 0.5)
    return study


def test_the_same_space_continues_the_study():
    space = parse_search_space(PARAMS, [])
    assert changed_space(study_drawn_from(space), space.distributions) is None
    assert changed_space(optuna.create_study(), space.distributions) is None  # a new study


def test_a_narrower_range_or_a_fixed_value_is_another_space():
    study = study_drawn_from(parse_search_space(PARAMS, []))
    narrower = parse_search_space(PARAMS, ["classifier.lr=tag(log, interval(0.001, 0.01))"])
    assert changed_space(study, narrower.distributions).startswith("classifier.lr was")
    fixed = parse_search_space(PARAMS, ["model=a"])
    assert changed_space(study, fixed.distributions) == "no longer searched: model"


def test_a_trial_cut_short_after_some_draws_is_not_another_space():
    space = parse_search_space(PARAMS, [])
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    trial.suggest_float("classifier.lr", 0.0005, 0.05, log=True)  # its worker died here
    assert changed_space(study, space.distributions) is None
