"""The README's other backbones: a ConvNeXt refined, a vision transformer, a timm model (see
test_readme.py for how commands are taken from the README and shrunk)."""

import pytest

from tests.acceptance.claims import CONVNEXT, TIMM, VIT
from tests.acceptance.conftest import command, ok, shrunk


def test_a_convnext_refines(workspace):
    result = ok(workspace.run(shrunk(command(CONVNEXT))))
    assert "finished: dnn, convnext_tiny" in result.stdout


def test_a_vision_transformer_at_a_side_its_patches_tile(workspace):
    result = ok(workspace.run(shrunk(command(VIT))))  # 32 px: two 16 px patches a side
    assert "finished: svm, vit_b_16" in result.stdout


def test_a_timm_model(workspace):
    pytest.importorskip("timm", reason="timm is the optional extra .[timm] (in .[dev] too)")
    result = ok(workspace.run(shrunk(command(TIMM))))
    assert "finished: svm" in result.stdout
