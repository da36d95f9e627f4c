"""The configuration contract: the real conf/ composes for every documented choice."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf, open_dict

from src.errors import UserError
from src.overrides import override, prepare_overrides
from src.run_spec import RULES, check_config, describe_run, refinement

CONF = str(Path(__file__).resolve().parents[1] / "conf")


def composed(*overrides: str):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("config", overrides=prepare_overrides(list(overrides)))


def test_defaults_are_the_embedded_dataset_resnet18_224px_svm(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = composed()
    assert cfg.dataset.name == "synthetic_textures" and cfg.model.name == "resnet18"
    assert cfg.resolution.size == 224 and cfg.classifier.name == "svm"
    assert cfg.tracking.uri == "sqlite:///mlruns/mlflow.db" and cfg.model.weights == "auto"
    assert cfg.dataset.split.train_ratio == 0.75 and cfg.dataset.split.val_ratio == 0.2
    assert list(cfg.classifier.C_values) == [0.0001, 0.001, 0.01, 0.1, 1, 10, 100]


@pytest.mark.parametrize("size", [112, 224, 448, 896])
def test_resolution_is_chosen_by_its_number(size):
    cfg = composed(f"resolution={size}")
    assert cfg.resolution.size == size and cfg.resolution.featurize_batch_size > 0


def test_any_other_resolution_is_a_size_override():
    assert composed("resolution.size=320").resolution.size == 320


@pytest.mark.parametrize("model", ["resnet18", "resnet34", "resnet50"])
def test_every_model_depth_composes(model):
    assert composed(f"model={model}").model.name == model


def test_folder_dataset_takes_a_root_and_home_is_expanded():
    cfg = composed("dataset=folder", "dataset.root=~/pics")
    assert cfg.dataset.root == str(Path.home() / "pics") and cfg.dataset.split.by == "filename"


def test_unknown_option_names_the_available_ones():
    with pytest.raises(MissingConfigException, match="resnet50"):
        composed("model=resnet99")


def test_overrides_are_made_valid_for_hydra():
    assert prepare_overrides(["resolution=224,448", "resolution.size=5"]) == [
        "resolution='224','448'",
        "resolution.size=5",
    ]


def test_values_chosen_by_a_sweeper_become_valid_overrides():
    assert override("resolution", 224) == "resolution='224'"
    assert override("classifier.lr", 0.0125) == "classifier.lr=0.0125"
    assert override("model", "resnet34") == "model=resnet34"
    assert override("classifier.freeze_backbone", True) == "classifier.freeze_backbone=true"
    assert override("trial.storage", "sqlite:////a b/x.db") == "trial.storage='sqlite:////a b/x.db'"


@pytest.mark.parametrize("mode", ["dnn", "svm_dnn_refined"])
def test_refinement_settings_reach_the_trainer_resolved_and_typed(mode):
    settings = refinement(composed(f"classifier={mode}").classifier)
    assert settings.batch_size == 16 and isinstance(settings.batch_size, int)  # 224 px's
    assert settings.epochs == 15 and settings.schedule == "cosine"
    assert refinement(composed(f"classifier={mode}", "resolution=448").classifier).batch_size == 8


def test_a_classifier_key_no_mode_reads_is_an_error_naming_it():
    classifier = composed("classifier=dnn").classifier
    with open_dict(classifier):
        classifier.batch_sise = 8
    with pytest.raises(
        UserError, match=r"classifier.batch_sise .*did you mean classifier.batch_size"
    ):
        refinement(classifier)


def test_a_classifier_value_of_the_wrong_type_is_an_error_naming_it():
    classifier = composed("classifier=dnn", "classifier.epochs=many").classifier
    with pytest.raises(UserError, match="classifier.epochs='many'"):
        refinement(classifier)


def test_the_store_is_the_command_line_then_the_environment_then_the_default(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///environment.db")
    assert composed("tracking.uri=sqlite:///given.db").tracking.uri == "sqlite:///given.db"
    assert composed().tracking.uri == "sqlite:///environment.db"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert composed().tracking.uri == "sqlite:///mlruns/mlflow.db"
    assert composed("paths.mlruns_dir=elsewhere").tracking.uri == "sqlite:///elsewhere/mlflow.db"


def test_every_value_rule_names_a_key_of_the_config_and_the_defaults_pass():
    """A rule whose key was renamed would check nothing: each names a key that some
    classifier's config has, and no shipped default breaks a rule."""
    keys = set()
    for classifier in ("svm", "dnn", "svm_dnn_refined"):
        cfg = composed(f"classifier={classifier}")
        check_config(cfg)
        keys |= {k for k in RULES if OmegaConf.select(cfg, k, default=KeyError) is not KeyError}
    assert keys == set(RULES)


def test_each_job_checks_its_values_before_its_run_starts():
    """A sweep's jobs go through describe_run, not the command-line check."""
    with pytest.raises(UserError, match=r"^classifier.lr=-1: expected a positive number"):
        describe_run(composed("classifier=dnn", "classifier.lr=-1"))


@pytest.mark.parametrize(
    ("override", "key", "first"),
    [
        ("resolution=choice(112,224)", "resolution.size", 112),  # a numeric group's option
        ("resolution=112,224", "resolution.size", 112),
        ("model=resnet34,resnet50", "model.name", "resnet34"),
        ("seed=range(3,5)", "seed", 3),
    ],
)
def test_the_first_job_of_a_sweep_composes_at_each_sweeps_first_option(override, key, first):
    """What `src.run` checks before a sweep starts (a group swept with `choice(...)` once
    failed to compose: 'Config group override must be a string')."""
    from omegaconf import OmegaConf

    from src.override_check import first_job
    from src.overrides import prepare_overrides

    assert OmegaConf.select(first_job(prepare_overrides([override])), key) == first
