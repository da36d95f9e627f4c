"""The key=value arguments and the tracking store shared by register, predict and export."""

import mlflow
import pytest

from src.command_line import REQUIRED, at_least, parse_arguments, use_tracking_store
from src.errors import UserError


@pytest.fixture(autouse=True)
def forget_the_store():
    """use_tracking_store points this process's MLflow at a store (and sets
    MLFLOW_TRACKING_URI, as MLflow does): undo that after each test."""
    yield
    mlflow.set_tracking_uri(None)


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


def test_the_store_is_the_argument_then_the_environment_then_the_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("given", "environment", "mlruns"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "mlflow.db").touch()
    expected = {
        name: f"sqlite:///{tmp_path}/{name}/mlflow.db"
        for name in ("given", "environment", "mlruns")
    }
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///environment/mlflow.db")
    assert use_tracking_store("sqlite:///given/mlflow.db") == expected["given"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///environment/mlflow.db")
    assert use_tracking_store(None) == expected["environment"]
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert use_tracking_store(None) == expected["mlruns"]


def test_a_missing_sqlite_store_is_named_not_created(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(UserError, match=f"no MLflow store at {tmp_path}/mlruns/mlflow.db"):
        use_tracking_store(None)
    assert not (tmp_path / "mlruns").exists()
