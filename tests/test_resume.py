"""Resuming a refinement (src/resume.py): what Ctrl-C says is kept, what a resume may change,
and that a refused resume leaves the run as it was. In process, on one tiny run: Ctrl-C as
its first epoch's line is shown, resumed with one more epoch, then resumes that are refused.
"""

import copy
import dataclasses
import logging
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hypothesis import example, given, settings
from hypothesis import strategies as st
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

import src.modes.auto_lr
from src.errors import UserError
from src.pipeline import Interrupted, pipeline
from src.resume import MAY_CHANGE, config_differences, may_change
from src.run_spec import describe_run
from src.tracking.mlflow_run import flatten
from tests.conftest import ROOT, fresh_store

CPU = torch.device("cpu")
# what a resume accepted without a word (issue 24); freeze_backbone failed the run instead
CHANGED_SILENTLY = (
    "classifier.dropout",
    "classifier.crop",
    "classifier.jitter",
    "classifier.hflip",
    "classifier.balance_classes",
    "classifier.max_train_images",
    "model.weights",
)


def compose_config(overrides: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=overrides)


def spec_of(*overrides: str):
    return describe_run(compose_config(list(overrides)))


class CtrlCAfterLine(logging.Handler):
    """Shows the training's lines, and presses Ctrl-C as soon as one starts with `press_at`."""

    def __init__(self, press_at: str):
        super().__init__()
        self.press_at, self.shown = press_at, []

    def emit(self, record):
        self.shown.append(record.getMessage())
        if self.shown[-1].startswith(self.press_at):
            raise KeyboardInterrupt


def tiny_refinement(textures: Path, tmp: Path, *more: str) -> list[str]:
    """A refinement of seconds, in process: 4 images per class at 32 px, random weights, one
    epoch, stored under `tmp`; `more` overrides on top."""
    return [
        "classifier=dnn",
        "dataset=folder",
        f"dataset.root={textures}",
        "dataset.max_images_per_class=4",
        "resolution.size=32",
        "model.weights=none",
        "classifier.epochs=1",
        *more,
        "num_workers=0",
        "tracking.system_metrics=false",
        f"tracking.uri=sqlite:///{tmp}/m.db",
        f"paths.data_dir={tmp}/data",
    ]


def interrupt_at_first_epoch(overrides: list[str]) -> tuple[Interrupted, list[str]]:
    """Run in process and press Ctrl-C as its epoch 0 line is shown: what the run said on
    stopping, and the training's lines."""
    training_log = logging.getLogger("src.classifiers.dnn")
    ctrl_c, level = CtrlCAfterLine("epoch 0:"), training_log.level
    training_log.addHandler(ctrl_c)
    training_log.setLevel(logging.INFO)
    try:
        with pytest.raises(Interrupted) as stopped:
            pipeline(spec_of(*overrides), CPU)
    finally:
        training_log.removeHandler(ctrl_c)
        training_log.setLevel(level)
    return stopped.value, ctrl_c.shown


@pytest.fixture(scope="module")
def interrupted(textures, tmp_path_factory):
    """A run with lr=auto, stopped by Ctrl-C as its epoch 0 line is shown."""
    tmp = tmp_path_factory.mktemp("resume")
    fresh_store(tmp / "m.db")
    # with a 3-step range test first
    overrides = tiny_refinement(textures, tmp, "classifier.lr=auto", "classifier.lr_find.steps=3")
    stopped, shown = interrupt_at_first_epoch(overrides)
    client = MlflowClient(f"sqlite:///{tmp}/m.db")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return {
        "overrides": overrides,
        "client": client,
        "run": run,
        "shown": shown,
        "message": str(stopped),
    }


@pytest.fixture(scope="module")
def story(interrupted):
    """The interrupted run resumed with one more epoch, its range tests counted."""
    run_id = interrupted["run"].info.run_id
    range_tests = []
    real_test = src.modes.auto_lr.run_range_test
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            src.modes.auto_lr,
            "run_range_test",
            lambda *a, **k: range_tests.append(1) or real_test(*a, **k),
        )
        pipeline(spec_of(*interrupted["overrides"], f"resume={run_id}", "classifier.epochs=2"), CPU)
    return {**interrupted, "run_id": run_id, "range_tests_on_resume": len(range_tests)}


def test_ctrl_c_as_an_epoch_line_is_shown_says_that_epoch_is_kept(interrupted):
    assert interrupted["shown"][-1].startswith("epoch 0:")
    assert interrupted["message"].startswith("interrupted after epoch 0; continue with: ")
    assert interrupted["run"].info.status == "KILLED"


def test_a_run_that_finishes_leaves_no_checkpoint(story):
    """KILLED, it kept one (the Ctrl-C line reads its epoch from it); FINISHED, none."""
    run = story["client"].get_run(story["run_id"])
    assert run.info.status == "FINISHED"
    assert not Path(run.data.tags["checkpoint"]).parent.exists()


def test_a_resumed_lr_auto_run_keeps_the_rate_its_range_test_chose(story):
    client, run_id = story["client"], story["run_id"]
    assert story["range_tests_on_resume"] == 0
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["lr_find.suggested"] == story["run"].data.params["lr_find.suggested"]
    steps = sorted(m.step for m in client.get_metric_history(run_id, "train/loss"))
    assert steps == [0, 1]  # epoch 0 from before Ctrl-C, epoch 1 resumed


def other_value(value):
    """A value unlike `value`, of its kind where it has one."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value * 2 + 1
    if isinstance(value, list):
        return [*value, 7]
    return "other" if value is None else f"{value}-other"


def changed(config: dict, key: str) -> dict:
    """`config` with the value of the dotted `key` replaced by another."""
    config = copy.deepcopy(config)
    *groups, name = key.split(".")
    node = config
    for group in groups:
        node = node[group]
    node[name] = other_value(node[name])
    return config


def as_params(config: dict) -> dict:
    return {k: "null" if v is None else str(v) for k, v in flatten(config).items()}


# the story's config groups (its values do not matter here)
CONFIG = OmegaConf.to_container(
    compose_config(["classifier=dnn", "dataset=folder", "dataset.root=/images"]), resolve=True
)
COMPARED = sorted(k for k in flatten(CONFIG) if not may_change(k))


@settings(max_examples=60, deadline=None)
@given(key=st.sampled_from(sorted(flatten(CONFIG))))
def test_a_resume_compares_every_setting_but_the_allowed_ones(key):
    differences = config_differences(as_params(CONFIG), as_params(changed(CONFIG, key)))
    if may_change(key):
        assert differences == []
    else:
        assert [d.split(":", 1)[0] for d in differences] == [key]


def test_a_setting_newer_than_the_run_agrees_only_at_null():
    """dataset.split.val_list came after runs that were logged without it."""
    older = {k: v for k, v in as_params(CONFIG).items() if k != "dataset.split.val_list"}
    assert config_differences(older, as_params(CONFIG)) == []
    listed = as_params(changed(CONFIG, "dataset.split.val_list"))
    (difference,) = config_differences(older, listed)
    assert difference.startswith("dataset.split.val_list: the run has no such setting")


def test_what_a_resume_may_change_is_how_long_and_where_never_how():
    assert MAY_CHANGE == (
        "classifier.epochs",
        "num_workers",
        "tracking.*",
        "paths.*",
        "dataset.root",
        "trial.*",
        "resume",
        "label_issues",  # a step after the model: the resumed run's model is the same
    )
    assert {*CHANGED_SILENTLY, "classifier.freeze_backbone", "precision"} <= set(COMPARED)


@settings(max_examples=6, deadline=None)
@given(key=st.sampled_from(COMPARED))
@example(key="classifier.freeze_backbone")  # failed the finished run with a traceback
@example(key="precision")
@example(key="classifier.dropout")
@example(key="classifier.hflip")
@example(key="model.weights")
def test_a_refused_resume_says_why_in_one_line_and_changes_nothing(story, key):
    client, run_id = story["client"], story["run_id"]
    before = client.get_run(run_id)
    spec = spec_of(*story["overrides"], f"resume={run_id}", "classifier.epochs=3")
    if key == "precision":  # the run logs it resolved: change what is resolved
        precision = "fp32" if before.data.params["precision"] != "fp32" else "bf16"
        spec = dataclasses.replace(
            spec, compute=dataclasses.replace(spec.compute, precision=precision)
        )
    else:  # the config as the run would log it
        tracking = dataclasses.replace(spec.tracking, config=changed(spec.tracking.config, key))
        spec = dataclasses.replace(spec, tracking=tracking)
    with pytest.raises(UserError) as refused:
        pipeline(spec, CPU)
    line = str(refused.value)
    assert line.startswith(f"resume={run_id} refused, the run differs: {key}: the run has ")
    assert "\n" not in line
    after = client.get_run(run_id)
    assert after.info.status == "FINISHED" and after.info.end_time == before.info.end_time
    assert (after.data.params, after.data.tags) == (before.data.params, before.data.tags)
    assert len(client.search_runs([after.info.experiment_id])) == 1
