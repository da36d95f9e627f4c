"""A conditional search space (hydra.sweeper.conditional, sweep=auto): a mode's own keys are
drawn exactly in the trials that draw that mode, a plain command-line value pins one, and the
cheap trials queued first are every combination of the other choices, once."""

import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from src.errors import UserError
from src.tuning.search_space import parse_search_space, point, size, suggest
from src.tuning.study import duplicate_of
from src.tuning.sweep_loop import queue_first

AUTO = OmegaConf.to_container(OmegaConf.load("conf/sweep/auto.yaml"), resolve=True)
SWEEPER = AUTO["hydra"]["sweeper"]


def auto_space(arguments=()):
    return parse_search_space(SWEEPER["params"], list(arguments), None, SWEEPER["conditional"])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_each_trial_draws_exactly_its_modes_own_keys(seed):
    space = auto_space()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    own = set(SWEEPER["conditional"]["classifier=dnn"])
    for _ in range(6):
        values = suggest(study.ask(), space)
        drawn = set(values) - set(SWEEPER["params"])
        assert drawn == (own if values["classifier"] != "svm" else set())


def test_the_space_is_not_counted_and_a_refining_trial_is_never_a_duplicate():
    space = auto_space()
    assert size(space) is None  # no "all points tried" stop at 18 top-level points
    study = optuna.create_study()
    refining = {"classifier": "dnn", "model": "resnet18", "resolution": 112, "x": 0.01}
    assert point(refining, space) is None
    assert duplicate_of(study, study.ask(), refining, space) is None
    svm = {"classifier": "svm", "model": "resnet18", "resolution": 112}
    assert point(svm, space) is not None  # an SVM trial is a point: run once


def test_a_plain_value_on_the_command_line_pins_a_conditional_key():
    space = auto_space(["classifier.epochs=2"])
    assert "classifier.epochs" not in space.conditional["classifier=dnn"]
    assert "classifier.epochs=2" in space.fixed


@pytest.mark.parametrize(
    "conditional, message",
    [
        ({"classifier=knn": {"classifier.lr": "interval(0.1, 1)"}}, "not a searched choice"),
        ({"seed=1": {"classifier.lr": "interval(0.1, 1)"}}, "not a searched choice"),
        ({"classifier=dnn": {"classifier.lr": "0.1"}}, "is no range"),
    ],
)
def test_a_wrong_condition_is_one_line_before_any_trial(conditional, message):
    with pytest.raises(UserError, match=message):
        parse_search_space(SWEEPER["params"], [], None, conditional)


def test_the_cheap_trials_go_first_once_every_combination():
    space = auto_space()
    study = optuna.create_study()
    queue_first(study, space, {"classifier": "svm"})
    queue_first(study, space, {"classifier": "svm"})  # a rerun: queued once per study
    # queued trials wait (WAITING) with their values in Optuna's system attributes
    queued = [t.system_attrs["fixed_params"] for t in study.get_trials(deepcopy=False)]
    assert len(queued) == 3 * 2
    assert {(p["model"], p["resolution"]) for p in queued} == {
        (m, r) for m in ("resnet18", "resnet34", "resnet50") for r in (112, 224)
    }
    assert all(p["classifier"] == "svm" for p in queued)
