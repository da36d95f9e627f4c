"""The backbone: feature sizes, weights from a file, and clear answers when weights are missing."""

import logging

import pytest
import torch

from src.errors import UserError
from src.features.backbone import build_featurizer

# A closed local port as proxy: any download fails at once, as it does on an offline machine.
OFFLINE = {"https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}


@pytest.mark.parametrize(
    ("arch", "size"), [("resnet18", 512), ("resnet34", 512), ("resnet50", 2048)]
)
def test_features_are_the_pooled_penultimate_layer(arch, size):
    featurizer, weights = build_featurizer(arch, "none")
    with torch.inference_mode():
        features = featurizer.eval()(torch.zeros(2, 32, 32, 3, dtype=torch.uint8))
    assert features.shape == (2, size)
    assert weights.identity == "none" and not weights.pretrained


def test_weights_from_a_state_dict_file_are_loaded_and_identified(tmp_path):
    source, _ = build_featurizer("resnet18", "none")
    path = tmp_path / "mine.pt"
    torch.save(source[1].state_dict(), path)
    featurizer, weights = build_featurizer("resnet18", str(path))
    assert torch.equal(featurizer[1].conv1.weight, source[1].conv1.weight)
    assert weights.pretrained and weights.identity.startswith("file:mine.pt:")


def test_a_state_dict_of_another_architecture_is_refused(tmp_path):
    other, _ = build_featurizer("resnet50", "none")
    path = tmp_path / "r50.pt"
    torch.save(other[1].state_dict(), path)
    with pytest.raises(UserError, match="does not fit this architecture"):
        build_featurizer("resnet18", str(path))


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        build_featurizer("resnet18", str(tmp_path / "nope.pt"))


def test_imagenet_without_network_or_cache_names_the_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for key, value in OFFLINE.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(UserError, match=f"{tmp_path}/torch/hub/checkpoints.*model.weights=none"):
        build_featurizer("resnet18", "imagenet")


def test_auto_without_weights_warns_loudly_and_goes_on_random(tmp_path, monkeypatch, caplog, capfd):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for key, value in OFFLINE.items():
        monkeypatch.setenv(key, value)
    with caplog.at_level(logging.WARNING):
        _, weights = build_featurizer("resnet18", "auto")
    assert not weights.pretrained and weights.identity == "none"
    assert "RANDOMLY INITIALISED" in caplog.text and "near chance" in caplog.text
    assert len(caplog.records) == 1  # said once
    printed = capfd.readouterr()
    assert "Downloading" not in printed.out + printed.err  # nothing is under way
