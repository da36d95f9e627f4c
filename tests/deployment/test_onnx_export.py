"""ONNX export: the whole classifier, pixels to scores, checked against torch by onnxruntime."""

import base64
import json
import os
import subprocess
import sys

import mlflow
import numpy as np
import onnxruntime
import pandas as pd
import pytest
import torch

from src.classifiers.network import ImageClassifier, make_head
from src.data.presets import load_pixels
from src.deployment import onnx_export
from src.deployment.onnx_export import export_onnx
from src.errors import UserError
from src.export import export
from src.features.backbone import build_featurizer
from tests.conftest import ROOT, image_bytes
from tests.deployment.conftest import CLASSES, readme_python_block, run_module


def tiny_classifier(head: str, l2_normalize: bool) -> ImageClassifier:
    torch.manual_seed(0)
    featurizer, _ = build_featurizer("resnet18", "none")
    return ImageClassifier(featurizer, make_head(head, 512, 4, dropout=0.5), l2_normalize)


@pytest.mark.parametrize("head, l2_normalize", [("svm", True), ("dnn", False)])
def test_each_head_kind_exports_with_a_dynamic_batch_and_matches_torch(
    head, l2_normalize, tmp_path
):
    classifier = tiny_classifier(head, l2_normalize)
    output = tmp_path / "model.onnx"
    difference = export_onnx(classifier, 32, list("abcd"), "letterbox", output)
    assert difference < 1e-4
    session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    (pixels_input,) = session.get_inputs()
    assert pixels_input.name == "pixels" and pixels_input.type == "tensor(uint8)"
    assert pixels_input.shape[1:] == [32, 32, 3] and not isinstance(pixels_input.shape[0], int)
    pixels = torch.randint(0, 256, (5, 32, 32, 3), dtype=torch.uint8)
    logits, probabilities = session.run(["logits", "probabilities"], {"pixels": pixels.numpy()})
    with torch.inference_mode():  # eval mode: the dnn head's dropout is off
        expected = classifier.eval()(pixels).numpy()
    assert logits.shape == (5, 4) and np.abs(logits - expected).max() < 1e-4
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)


def test_a_failed_parity_check_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export, "TOLERANCE", 0.0)  # no export can pass this
    output = tmp_path / "model.onnx"
    with pytest.raises(UserError, match="differs from torch by .* nothing was written"):
        export_onnx(tiny_classifier("svm", True), 32, list("abcd"), "letterbox", output)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # trains and logs a model; README's export acceptance test runs by default
def test_a_logged_model_exports_and_onnxruntime_scores_like_the_served_model(trained, tmp_path):
    output = tmp_path / "model.onnx"
    result = run_module(
        "src.export",
        f"model=runs:/{trained.run_id}/model",
        "format=onnx",
        f"output={output}",
        f"tracking_uri={trained.uri}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "onnxruntime matches torch: max abs difference" in result.stdout

    # what the README tells an onnxruntime user to do
    session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    metadata = session.get_modelmeta().custom_metadata_map
    classes, size = json.loads(metadata["classes"]), int(metadata["size"])
    assert classes == CLASSES and size == 32 and metadata["preprocessing"] == "letterbox"
    images = [image_bytes(size=(120, 80), seed=s) for s in range(3)]
    pixels = np.stack([load_pixels(i, size, metadata["preprocessing"]) for i in images])
    (probabilities,) = session.run(["probabilities"], {"pixels": pixels})

    mlflow.set_tracking_uri(trained.uri)
    served = mlflow.pyfunc.load_model(f"runs:/{trained.run_id}/model").predict(
        pd.DataFrame({"image": [base64.b64encode(i).decode() for i in images]})
    )
    assert [classes[k] for k in probabilities.argmax(axis=1)] == list(served["label"])
    assert np.abs(probabilities - served[classes].to_numpy()).max() < 1e-4

    # and the README's onnxruntime example, as written, prints the same labels
    (tmp_path / "a.jpg").write_bytes(images[0])
    (tmp_path / "b.png").write_bytes(image_bytes("PNG", size=(120, 80), seed=1))
    example = readme_python_block('onnxruntime.InferenceSession("model.onnx"')
    result = subprocess.run(
        [sys.executable, "-c", example],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    printed = [line.split()[:2] for line in result.stdout.splitlines()]
    assert printed == [["a.jpg", served["label"][0]], ["b.png", served["label"][1]]]


def test_an_unknown_format_is_refused():
    with pytest.raises(UserError, match="format=tflite is not one of onnx"):
        export(["model=runs:/abc/model", "format=tflite"])
