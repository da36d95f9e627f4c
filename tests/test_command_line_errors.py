"""What a user gets back for a mistake on `python -m src.run`'s command line: one line,
naming the key or option, what is close to it and what is valid, in about a second."""

import subprocess
import sys
import time

import pytest

from src.features.model_options import register_model_options
from src.override_check import problem
from src.overrides import hydra_overrides, prepare_overrides
from tests.conftest import ROOT

register_model_options()  # as src.run does before it checks anything


def check(*args: str) -> str | None:
    return problem(prepare_overrides(list(args)))


def test_a_misspelt_group_names_the_group_it_is_close_to():
    message = check("classifer=dnn")
    assert message.startswith("classifer=dnn: no key or group 'classifer'")
    assert "did you mean classifier?" in message


def test_an_unknown_option_lists_the_close_ones_and_all_choices():
    message = check("model=resnet99")
    assert message.startswith("model=resnet99 is not a model option; closest: resnet")
    assert "choices: resnet18, resnet34, resnet50, timm, alexnet," in message  # files first
    assert check("model=convnext_tiny") is None  # a torchvision model without a file


def test_a_misspelt_key_inside_the_chosen_classifier_is_named():
    message = check("classifier=dnn", "classifier.batch_sise=8")
    assert "classifier has no key 'batch_sise'; did you mean classifier.batch_size?" in message
    assert check("classifier.epochs=3").startswith("classifier.epochs=3: classifier has no key")


@pytest.mark.parametrize(
    "args",
    [
        ["classifier=dnn", "classifier.epochs=3"],
        ["resolution=448", "model=resnet50"],
        ["sweep=refine_dnn", "classifier.epochs=2", "hydra.sweeper.n_trials=3"],
        ["model=resnet18,resnet34", "resolution=224,448"],
        ["sweep=refine_dnn", "classifier.lr=tag(log, interval(0.001, 0.01))"],
        ["dataset=folder", "dataset.root=/somewhere", "+extra.key=1"],
        ["hydra/launcher=joblib", "resume=abc"],
    ],
)
def test_what_the_readme_shows_passes_the_check(args):
    assert check(*args) is None


def test_hydra_flags_are_not_taken_for_overrides():
    assert hydra_overrides(["-m", "--cfg", "job", "a=1"]) == ["a=1"]
    assert hydra_overrides(["--config-dir", "mine", "a=1"]) is None


@pytest.mark.parametrize(
    "typed, expected",
    [
        ("classifer=dnn", "did you mean classifier?"),
        ("model=resnet99", "closest: resnet"),
    ],
)
def test_the_command_answers_in_one_line_within_3_seconds(typed, expected):
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "src.run", typed], cwd=ROOT, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - started
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and expected in result.stderr, result.stderr
    assert result.stderr.startswith("error: ") and result.stdout == ""
    assert elapsed < 3, f"{elapsed:.1f} s"
