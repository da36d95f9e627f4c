"""`model=NAME` for every torchvision classification model, `model=timm`, and close names."""

import pytest
import torchvision.models
from hydra import compose, initialize_config_dir
from hydra.errors import MissingConfigException

from src.features.model_options import (
    TORCHVISION_MODELS,
    close_model_names,
    register_model_options,
)
from tests.test_config import CONF


def composed(*overrides: str):
    register_model_options()  # what src/run.py does before hydra.main
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("config", overrides=list(overrides))


def test_the_registered_names_are_exactly_torchvisions_classification_models():
    assert set(TORCHVISION_MODELS) == set(torchvision.models.list_models(module=torchvision.models))


@pytest.mark.parametrize("name", ["convnext_tiny", "efficientnet_v2_s", "vit_b_16", "swin_t"])
def test_any_torchvision_model_composes_without_a_yaml_file(name):
    cfg = composed(f"model={name}")
    assert cfg.model.name == name and cfg.model.weights == "auto"


def test_the_resnet_yaml_files_still_win(tmp_path):
    assert composed("model=resnet50").model.name == "resnet50"


def test_timm_takes_its_model_name():
    cfg = composed("model=timm", "model.name=convnext_nano")
    assert cfg.model.name == "convnext_nano" and cfg.model.source == "timm"


def test_a_mistyped_model_lists_the_registered_options_and_close_names():
    with pytest.raises(MissingConfigException, match="convnext_tiny") as error:
        composed("model=resnet99")
    assert "resnet18" in str(error.value)
    close = close_model_names("resnet99")
    assert {"resnet18", "resnet34", "resnet50"} <= set(close) and len(close) <= 5
    assert close_model_names("convnext_tiyn")[0] == "convnext_tiny"
    assert close_model_names("efficientnet_b9")[0].startswith("efficientnet_b")
