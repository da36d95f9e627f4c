"""Beyond ResNet: each architecture's featurizer is its pooled penultimate layer, its own
normalisation rides inside the model, and sizes it cannot take fail in one line."""

import pytest
import torch

from src.classifiers.network import ImageClassifier, build_from_spec, make_head, make_spec
from src.deployment.onnx_export import export_onnx
from src.errors import UserError
from src.features.backbone import build_featurizer, describe, feature_size

REPRESENTATIVE = [  # (architecture, side, pooled feature size)
    ("convnext_tiny", 32, 768),
    ("efficientnet_b0", 32, 1280),
    ("vit_b_16", 32, 768),
    ("mobilenet_v3_small", 32, 1024),
]


def features_of(arch, size):
    featurizer, weights = build_featurizer(arch, "none", size)
    with torch.inference_mode():
        return featurizer.eval()(torch.zeros(2, size, size, 3, dtype=torch.uint8)), weights


@pytest.mark.parametrize(("arch", "size", "width"), REPRESENTATIVE)
def test_features_are_the_pooled_penultimate_layer(arch, size, width):
    features, weights = features_of(arch, size)
    assert features.shape == (2, width) and feature_size(arch) == width
    assert weights.identity == "none" and not weights.pretrained


def test_a_timm_model_is_a_backbone_too():
    pytest.importorskip("timm", reason="timm is an optional extra: pip install -e '.[timm]'")
    features, _ = features_of("timm:test_vit", 32)
    assert features.shape == (2, feature_size("timm:test_vit")) == (2, 64)


def test_the_architectures_own_normalisation_is_inside_and_recorded():
    pytest.importorskip("timm", reason="timm is an optional extra")
    featurizer, _ = build_featurizer("timm:test_efficientnet", "none", 32)
    params = describe("timm:test_efficientnet", featurizer)
    assert params["model.feature_size"] == "256" and params["model.native_size"] == "160"
    assert params["model.normalize_mean"] == "0.4850,0.4560,0.4060"
    convnext, _ = build_featurizer("convnext_tiny", "none", 32)
    assert describe("convnext_tiny", convnext)["model.normalize_std"] == "0.2290,0.2240,0.2250"


def test_a_vit_side_that_is_no_multiple_of_its_patch_is_one_clear_error():
    with pytest.raises(
        UserError, match=r"16 px patches: resolution.size=40 .* use resolution.size=32 or 48"
    ):
        build_featurizer("vit_b_16", "none", 40)


def test_a_side_an_architecture_cannot_take_is_one_clear_error():
    with pytest.raises(UserError, match="model inception_v3 cannot take 32 px images"):
        build_featurizer("inception_v3", "none", 32)


def test_an_unknown_architecture_names_close_ones():
    with pytest.raises(UserError, match="'convnext_tiyn' is not a torchvision .* convnext_tiny"):
        build_featurizer("convnext_tiyn", "none", 32)


def test_a_vit_state_dict_saved_at_another_side_is_carried_over(tmp_path):
    source, _ = build_featurizer("vit_b_32", "none", 64)
    path = tmp_path / "vit.pt"
    torch.save(source[1].state_dict(), path)
    loaded, weights = build_featurizer("vit_b_32", str(path), 32)  # 1 patch, not 2 x 2
    assert weights.pretrained
    assert torch.equal(loaded[1].conv_proj.weight, source[1].conv_proj.weight)
    assert loaded[1].encoder.pos_embedding.shape == (1, 2, 768)


@pytest.mark.slow  # builds and exports several networks
def test_a_spec_rebuilds_the_same_network_and_it_exports_to_onnx(tmp_path):
    torch.manual_seed(0)
    featurizer, _ = build_featurizer("mobilenet_v3_small", "none", 32)
    model = ImageClassifier(featurizer, make_head("dnn", 1024, 3, 0.5), False).eval()
    spec = make_spec(model, "mobilenet_v3_small", "dnn", list("abc"), 32, "letterbox", 0.5)
    rebuilt = build_from_spec(spec)
    pixels = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)
    with torch.inference_mode():
        assert torch.allclose(rebuilt(pixels), model(pixels), atol=1e-6)
    assert export_onnx(rebuilt, 32, list("abc"), "letterbox", tmp_path / "m.onnx") < 1e-4
