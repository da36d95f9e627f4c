"""The key=value arguments shared by the small commands: search, download, dedup, relabel,
register, predict and export."""

import pytest

from src.command_line import REQUIRED, at_least, parse_arguments
from src.errors import UserError


def test_arguments_are_key_value_pairs_typed_by_their_defaults():
    arguments = parse_arguments(
        ["model=runs:/abc/model", "output=a=b.csv", "n=4", "fast=true"],
        {"model": REQUIRED, "output": "x", "n": 3, "fast": False, "uri": None},
    )
    assert arguments == {
        "model": "runs:/abc/model",
        "output": "a=b.csv",
        "n": 4,
        "fast": True,
        "uri": None,
    }


def test_a_leading_tilde_is_the_home_folder(monkeypatch):
    monkeypatch.setenv("HOME", "/home/someone")
    assert parse_arguments(["input=~/pics"], {"input": REQUIRED})["input"] == "/home/someone/pics"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["model"], "expected key=value, got 'model' \\(keys: model, output\\)"),
        (["colour=red", "model=m"], "unknown key 'colour'; expected one of: model, output"),
        (["model=a", "model=b"], "model= is given twice"),
        (["output=x"], "missing model=..."),
        (["model="], "missing model=..."),
    ],
    ids=["not key=value", "unknown key", "repeated key", "missing key", "empty value"],
)
def test_argument_mistakes_name_what_was_expected(argv, message):
    with pytest.raises(UserError, match=message):
        parse_arguments(argv, {"model": REQUIRED, "output": None})


def test_numbers_are_checked():
    assert at_least({"n": 8}, "n", 1) == 8
    with pytest.raises(UserError, match="n must be a whole number, got 'eight'"):
        parse_arguments(["n=eight"], {"n": 1})
    with pytest.raises(UserError, match="n=0 is below 1"):
        at_least({"n": 0}, "n", 1)
