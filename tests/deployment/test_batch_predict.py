"""Batch prediction: `python -m src.predict` over a folder or files, written as one CSV."""

import base64
import csv
import shutil

import mlflow
import numpy as np
import pandas as pd
import pytest

from src.atomic import written_atomically
from src.data.folders import find_images
from src.data.presets import load_pixels
from src.deployment.loading import load_image_classifier
from src.deployment.registry import register_run
from src.errors import UserError
from src.precision import cpu_flags, native_bf16
from src.predict import predict
from tests.conftest import image_bytes
from tests.deployment.conftest import CLASSES, run_module

COLUMNS = ["path", "label", "score", *CLASSES, "error"]


def read_rows(path) -> list[dict]:
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == COLUMNS
        return list(reader)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A folder as a user has it: sub-folders, one corrupt JPEG, a note, a hidden file."""
    folder = tmp_path_factory.mktemp("photos")
    (folder / "holiday" / "day 2").mkdir(parents=True)
    for i, name in enumerate(["a.jpg", "holiday/b.png", "holiday/day 2/c.JPG", "d.webp"]):
        fmt = {"jpg": "JPEG", "png": "PNG", "JPG": "JPEG", "webp": "WEBP"}[name.split(".")[-1]]
        (folder / name).write_bytes(image_bytes(fmt, size=(90, 60), seed=i))
    (folder / "holiday" / "broken.jpg").write_bytes(image_bytes(size=(200, 200))[:300])
    (folder / "notes.txt").write_text("not a picture")
    (folder / ".thumbnail.jpg").write_bytes(image_bytes())
    return folder


@pytest.mark.slow  # trains and logs a model; README's predict acceptance test runs by default
def test_a_folder_is_scored_recursively_and_a_corrupt_file_gets_an_error_row(
    trained, photos, tmp_path
):
    output = tmp_path / "out" / "predictions.csv"
    result = run_module(
        "src.predict",
        f"model=runs:/{trained.run_id}/model",
        f"input={photos}",
        f"output={output}",
        "batch_size=2",  # several batches, one of them with the corrupt file in it
        f"tracking_uri={trained.uri}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "4 images scored on cpu, 1 unreadable (see the error column)" in result.stdout
    assert "predicting" in result.stderr  # the progress bar
    rows = {r["path"]: r for r in read_rows(output)}
    assert sorted(rows) == sorted(
        str(photos / n)
        for n in ["a.jpg", "d.webp", "holiday/b.png", "holiday/broken.jpg", "holiday/day 2/c.JPG"]
    )
    broken = rows.pop(str(photos / "holiday" / "broken.jpg"))
    assert broken["error"] == "corrupt or truncated JPEG data" and broken["label"] == ""
    for row in rows.values():
        scores = {c: float(row[c]) for c in CLASSES}
        assert row["error"] == "" and row["label"] == max(scores, key=scores.get)
        assert float(row["score"]) == pytest.approx(scores[row["label"]])
        assert sum(scores.values()) == pytest.approx(1, abs=1e-5)
    assert [p.name for p in output.parent.iterdir()] == ["predictions.csv"]  # no temp left


def test_a_folder_is_walked_as_training_walks_it_so_mac_zip_leftovers_are_not_scored(
    trained, tmp_path, monkeypatch
):
    """The files scored in a folder are those training would take from it, in its order:
    not `__MACOSX` (resource forks `._*`, or anything else a Mac's zip left there), hidden
    files or other extensions; and their paths stay as the user named the folder."""
    photos = tmp_path / "photos"
    kept = ["a/1.jpg", "a/sub/2.png", "b/3.jpg"]
    left_out = ["__MACOSX/._x.jpg", "__MACOSX/x.jpg", "a/__MACOSX/sub/._2.png"]
    left_out += ["a/__MACOSX/2.png", "a/.4.jpg"]
    for i, name in enumerate(kept + left_out):
        (photos / name).parent.mkdir(parents=True, exist_ok=True)
        fmt = "PNG" if name.endswith(".png") else "JPEG"
        (photos / name).write_bytes(image_bytes(fmt, size=(90, 60), seed=i))
    (photos / "b" / "notes.txt").write_text("not a picture")
    monkeypatch.chdir(tmp_path)
    predict(
        [f"model=runs:/{trained.run_id}/model", "input=photos", "output=predictions.csv"]
        + ["num_workers=0", f"tracking_uri={trained.uri}"]
    )
    scored = [row["path"] for row in read_rows(tmp_path / "predictions.csv")]
    assert scored == [f"photos/{name}" for name in kept]
    assert [f"photos/{f.relpath}" for f in find_images(photos)[1]] == scored


@pytest.mark.slow  # trains, registers and serves a model
def test_single_files_by_registered_alias_match_the_served_models_scores(trained, photos, tmp_path):
    client = trained.client
    register_run(client, client.get_run(trained.run_id), "batch-model", "champion")
    single = tmp_path / "one.jpg"
    shutil.copy(photos / "a.jpg", single)
    output = tmp_path / "one.csv"
    result = run_module(
        "src.predict",
        "model=models:/batch-model@champion",
        f"input=[{single},{photos / 'holiday' / 'b.png'}]",
        f"output={output}",
        "num_workers=0",
        env={"MLFLOW_TRACKING_URI": trained.uri},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = read_rows(output)
    assert [r["path"] for r in rows] == [str(single), str(photos / "holiday" / "b.png")]

    mlflow.set_tracking_uri(trained.uri)
    served = mlflow.pyfunc.load_model("models:/batch-model@champion").predict(
        pd.DataFrame({"image": [base64.b64encode(single.read_bytes()).decode()]})
    )
    assert rows[0]["label"] == served["label"][0]
    for c in CLASSES:
        assert float(rows[0][c]) == pytest.approx(served[c][0], abs=1e-5)


def test_the_served_model_computes_in_its_runs_precision_and_bf16_scores_as_fp32(
    trained, photos, monkeypatch
):
    mlflow.set_tracking_uri(trained.uri)
    model = load_image_classifier(f"runs:/{trained.run_id}/model")
    native = native_bf16("cpu", cpu_flags(), False)  # this machine's own answer
    logged = trained.client.get_run(trained.run_id).data.params["precision"]
    assert logged == ("bf16" if native else "fp32")  # the run's auto, decided once
    assert model.trained_precision == logged
    assert model.precision == logged  # served as the run's numbers were computed
    names = ["a.jpg", "d.webp", "holiday/b.png", "holiday/day 2/c.JPG"]
    pixels = np.stack([load_pixels((photos / n).read_bytes(), model.size) for n in names])
    scores = {}
    for precision in ("fp32", "bf16"):
        model.precision = precision
        _, scores[precision] = model.predict_pixels(pixels)
    assert (scores["fp32"].argmax(1) == scores["bf16"].argmax(1)).all()
    assert np.abs(scores["fp32"] - scores["bf16"]).max() < 0.02  # probabilities
    monkeypatch.setenv("IMGSWEEP_PRECISION", "fp32")  # the serving machine's override
    assert load_image_classifier(f"runs:/{trained.run_id}/model").precision == "fp32"
    output = photos.parent / "never-written.csv"
    with pytest.raises(UserError, match="^precision=fp16 runs on GPUs only"):
        predict(
            [f"model=runs:/{trained.run_id}/model", f"input={photos}", f"output={output}"]
            + [f"tracking_uri={trained.uri}", "precision=fp16"]
        )
    assert not output.exists()


class LooksLikeAnImageClassifier(mlflow.pyfunc.PythonModel):
    def predict_pixels(self, pixels):
        return pixels

    def predict(self, context, model_input: list[str], params=None) -> list[str]:
        return model_input


def test_a_model_not_logged_as_the_served_model_is_refused_whatever_its_methods(tmp_path):
    folder = tmp_path / "other-model"
    mlflow.pyfunc.save_model(folder, python_model=LooksLikeAnImageClassifier(), pip_requirements=[])
    with pytest.raises(UserError, match="is not an image classifier logged by src.run"):
        load_image_classifier(str(folder))


def test_a_missing_input_is_an_error_before_the_model_is_loaded_and_nothing_is_written(tmp_path):
    output = tmp_path / "predictions.csv"
    with pytest.raises(UserError, match=f"input {tmp_path / 'nowhere'} does not exist"):
        predict(["model=runs:/not-even-looked-up/model", f"input={tmp_path / 'nowhere'}"])
    with pytest.raises(UserError, match="no image files in"):
        predict(["model=m", f"input={tmp_path}", f"output={output}"])
    assert not output.exists()


def test_an_output_file_is_replaced_whole_or_not_at_all(tmp_path):
    target = tmp_path / "predictions.csv"
    target.write_text("the previous results\n")
    with pytest.raises(KeyboardInterrupt), written_atomically(target) as temporary:
        temporary.write_text("path,label\nhalf")
        raise KeyboardInterrupt
    assert target.read_text() == "the previous results\n"
    assert [p.name for p in tmp_path.iterdir()] == ["predictions.csv"]
    with written_atomically(target) as temporary:
        temporary.write_text("new\n")
    assert target.read_text() == "new\n"


def test_an_output_that_is_a_folder_is_refused(tmp_path):
    with (
        pytest.raises(UserError, match="is a folder; expected a file name"),
        written_atomically(tmp_path),
    ):
        pass
