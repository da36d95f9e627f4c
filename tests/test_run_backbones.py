"""End to end for architectures beyond ResNet: `python -m src.run model=NAME` trains, logs
a served model, and that model scores files and exports to ONNX with its parity check."""

import csv
import importlib.util
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, run_cli
from tests.test_run import only_run

# (overrides, classifier): one of each family, at 32 px, random weights, one epoch
CASES = [
    (["model=convnext_tiny"], "svm_dnn_refined"),
    (["model=efficientnet_b0"], "svm"),
    (["model=vit_b_16"], "dnn"),  # 32 px: 2 x 2 patches of 16 px
    (["model=mobilenet_v3_small"], "svm_dnn_refined"),
    (["model=timm", "model.name=test_vit"], "dnn"),
]


def module(name: str, *arguments: str, env: dict | None = None):
    environment = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    environment.update({"PYTHONPATH": str(ROOT), **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", name, *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,  # the dynamo ONNX export of EfficientNet-B0: 240 s on a busy 2-core machine
        env=environment,
    )


@pytest.mark.slow
@pytest.mark.parametrize(("overrides", "classifier"), CASES, ids=lambda c: str(c))
def test_an_architecture_trains_serves_predicts_and_exports(overrides, classifier, tmp_path):
    if "model=timm" in overrides and importlib.util.find_spec("timm") is None:
        pytest.skip("timm is an optional extra: pip install -e '.[timm]'")
    epochs = [] if classifier == "svm" else ["classifier.epochs=1"]  # svm has no epochs
    result = run_cli(*overrides, f"classifier={classifier}", *epochs, tmp=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    client, run = only_run(tmp_path)
    params = run.data.params
    assert int(params["model.feature_size"]) > 0 and params["model.normalize_mean"]
    uri, model = f"sqlite:///{tmp_path}/mlruns/mlflow.db", f"runs:/{run.info.run_id}/model"

    predictions = tmp_path / "predictions.csv"
    images = tmp_path / "data" / "synthetic"
    scored = module(
        "src.predict",
        f"model={model}",
        f"input={images}",
        f"output={predictions}",
        f"tracking_uri={uri}",
        "num_workers=0",
    )
    assert scored.returncode == 0, scored.stderr[-2000:]
    rows = list(csv.DictReader(predictions.open()))
    assert len(rows) == 24 and all(r["label"] in ("dotted", "leopard", "striped") for r in rows)

    exported = module(
        "src.export", f"model={model}", f"output={tmp_path / 'm.onnx'}", f"tracking_uri={uri}"
    )
    assert exported.returncode == 0, exported.stderr[-2000:]
    assert "onnxruntime matches torch" in exported.stdout


@pytest.mark.slow  # a run in a venv without timm
def test_model_timm_without_timm_says_how_to_install_it(tmp_path):
    hidden = tmp_path / "no_timm"
    hidden.mkdir()
    (hidden / "timm.py").write_text("raise ImportError('No module named timm')\n")
    result = run_cli(
        "model=timm",
        "model.name=test_vit",
        tmp=tmp_path,
        env={"PYTHONPATH": f"{hidden}{os.pathsep}{ROOT}"},
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: model=timm needs the timm package: pip install -e '.[timm]' (or pip install timm)"
    )


@pytest.mark.slow  # a CLI start
def test_a_vit_at_a_side_its_patches_do_not_tile_is_refused_in_one_line(tmp_path):
    result = run_cli("model=vit_b_16", "resolution.size=40", tmp=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: model vit_b_16 cuts images into 16 px patches: resolution.size=40 is not a "
        "multiple of 16; use resolution.size=32 or 48"
    )
