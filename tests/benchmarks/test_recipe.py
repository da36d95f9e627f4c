"""The recipe benchmark's real datasets, its reference wrapper and its harness."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from benchmarks import real_datasets, recipe
from benchmarks.real_datasets import SETS, TEST_PER_CLASS, TRAIN_PER_CLASS, ensure_real_datasets
from tests.benchmarks.quick import run_quick
from tests.conftest import ROOT


def files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.jpg"))


def test_each_real_set_has_three_photos_and_its_test_list_names_the_test_crops(tmp_path):
    for name, folder in ensure_real_datasets(tmp_path, seed=0).items():
        images = folder / "images"
        assert sorted(p.name for p in images.iterdir()) == sorted(SETS[name])
        listed = [line.split("\t") for line in (folder / "test.tsv").read_text().splitlines()]
        test = {path for _, path in listed}
        assert all(path.startswith(f"{label}/") for label, path in listed)
        for photo in SETS[name]:
            assert len([p for p in test if p.startswith(f"{photo}/")]) == TEST_PER_CLASS
            assert len(files(images / photo)) == TRAIN_PER_CLASS + TEST_PER_CLASS
        train = set(files(images)) - test
        assert set(files(folder / "reference" / "val")) == test
        assert set(files(folder / "reference" / "train")) == train
        linked = folder / "reference" / "val" / sorted(test)[0]
        assert os.path.samefile(linked, images / sorted(test)[0])  # a hard link, not a copy
        with Image.open(images / sorted(test)[0]) as image:
            assert image.mode == "RGB" and image.format == "JPEG"


def test_training_crops_and_test_crops_come_from_disjoint_rows(tmp_path, monkeypatch):
    """A photo black in the training rows and white below: a crop that crossed the line
    would hold both."""
    rows = 200
    photo = np.full((rows, 300, 3), 255, np.uint8)
    photo[: round(real_datasets.TRAIN_ROWS * rows)] = 0
    monkeypatch.setattr(real_datasets, "load_photo", lambda name: photo)
    folder = real_datasets.ensure_real_dataset(tmp_path, "photos", seed=3)
    for path in (folder / "images").rglob("*.jpg"):
        pixels = np.asarray(Image.open(path))
        if path.name.startswith("train_"):
            assert pixels.max() < 40, path
        else:
            assert pixels.min() > 215, path


def test_validation_crops_come_from_test_rows_of_their_own_and_overlap_nothing(
    tmp_path, monkeypatch
):
    """Training rows black, test rows white on the left and grey on the right (validation's
    columns): a crop that crossed a line would hold two of them."""
    rows, columns = 200, 300
    photo = np.full((rows, columns, 3), 255, np.uint8)
    split_row = round(real_datasets.TRAIN_ROWS * rows)
    photo[:split_row] = 0
    photo[split_row:, round((1 - real_datasets.VAL_COLUMNS) * columns) :] = 128
    monkeypatch.setattr(real_datasets, "load_photo", lambda name: photo)
    folder = real_datasets.ensure_real_dataset(tmp_path, "photos", seed=3, val_per_class=10)
    assert folder.name == "photos-val10"
    expected = {"train_": (0, 40), "val_": (100, 156), "test_": (215, 256)}
    for path in (folder / "images").rglob("*.jpg"):
        pixels = np.asarray(Image.open(path))
        ((low, high),) = [v for k, v in expected.items() if path.name.startswith(k)]
        assert low <= pixels.min() and pixels.max() < high, path
    listed = [line.split("\t") for line in (folder / "val.tsv").read_text().splitlines()]
    assert len(listed) == 10 * len(SETS["photos"])
    assert all(path.split("/")[1].startswith("val_") for _, path in listed)
    for photo_name in SETS["photos"]:
        crops = files(folder / "images" / photo_name)
        assert len(crops) == TRAIN_PER_CLASS + TEST_PER_CLASS  # 40 train + 10 val + 20 test
    plain = real_datasets.ensure_real_dataset(tmp_path, "photos", seed=3)
    assert plain.name == "photos" and not (plain / "val.tsv").exists()


def test_a_set_is_the_same_for_a_seed_and_made_only_once(tmp_path, monkeypatch):
    first = real_datasets.ensure_real_dataset(tmp_path / "a", "textures", seed=1)
    again = real_datasets.ensure_real_dataset(tmp_path / "b", "textures", seed=1)
    other = real_datasets.ensure_real_dataset(tmp_path / "c", "textures", seed=2)
    crop = "images/brick/test_000.jpg"
    assert (first / crop).read_bytes() == (again / crop).read_bytes()
    assert (first / crop).read_bytes() != (other / crop).read_bytes()
    made = (first / crop).stat().st_ino

    def build_again(*args):
        raise AssertionError("a finished set was made again")

    monkeypatch.setattr(real_datasets, "write_dataset", build_again)
    assert real_datasets.ensure_real_dataset(tmp_path / "a", "textures", seed=1) == first
    monkeypatch.undo()
    (first / real_datasets.MARKER).unlink()  # as if a build had stopped before its end
    real_datasets.ensure_real_dataset(tmp_path / "a", "textures", seed=1)
    assert (first / crop).stat().st_ino != made
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["textures"]  # no scratch left


def test_runs_take_turns_reference_first_for_each_dataset_and_seed():
    steps = recipe.plan(["textures", "photos"], range(2), {"default": [], "x": []}, ["auto"], True)
    sides = [(s["dataset"], s["seed"], s["side"], s.get("variant")) for s in steps]
    assert sides[:3] == [
        ("textures", 0, "reference", None),
        ("textures", 0, "imgsweep", "default"),
        ("textures", 0, "imgsweep", "x"),
    ]
    assert len(steps) == 2 * 2 * 3 and sides[3][:3] == ("textures", 1, "reference")


def test_a_variant_keeps_commas_inside_brackets_and_the_default_comes_first():
    variants = recipe.parse_variants(["step=classifier.schedule=step,classifier.milestones=[2,4]"])
    assert variants == {
        "default": [],
        "step": ["classifier.schedule=step", "classifier.milestones=[2,4]"],
    }


def test_the_reference_wrapper_times_epochs_and_prints_one_json_line(tmp_path):
    """A stand-in for torchvision's train.py with its functions' signatures."""
    (tmp_path / "train.py").write_text(
        textwrap.dedent(
            """
            import argparse, time, torch

            def train_one_epoch(model, criterion, optimizer, data_loader, device, epoch, args,
                                model_ema=None, scaler=None):
                time.sleep(0.05)

            def evaluate(model, criterion, data_loader, device, print_freq=100, log_suffix=""):
                print("Test: Acc@1 chatter")
                return 66.6667 if log_suffix == "" else 0.0

            def main(args):
                inputs = torch.eye(3)[[0, 0, 0, 2]]
                data = torch.utils.data.TensorDataset(inputs, torch.tensor([0, 0, 0, 2]))
                loader = torch.utils.data.DataLoader(data, batch_size=2)
                model = torch.nn.Linear(3, 3)
                with torch.no_grad():
                    model.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 1, 0]]))
                    model.bias.zero_()
                for epoch in range(args.epochs):
                    train_one_epoch(model, None, None, loader, "cpu", epoch, args)
                    evaluate(model, None, loader, device="cpu")
                    evaluate(model, None, loader, device="cpu", log_suffix="EMA")

            def get_args_parser():
                parser = argparse.ArgumentParser()
                parser.add_argument("--epochs", type=int)
                return parser
            """
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.reference_run", "--reference", str(tmp_path)]
        + ["--seed", "1", "--", "--epochs", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "chatter" in done.stderr and len(done.stdout.strip().splitlines()) == 1
    result = json.loads(done.stdout)
    assert result["test_accuracy"] == pytest.approx(2 / 3, abs=1e-4)
    assert result["test_accuracy_per_epoch"] == [pytest.approx(2 / 3, abs=1e-4)] * 2
    # the stand-in model gets class 0 right (3 images) and class 2 wrong (1 image)
    assert result["test_class_avg_accuracy"] == pytest.approx(0.5)
    assert len(result["train_images_per_second"]) == 2
    assert all(0 < rate < 4 / 0.05 for rate in result["train_images_per_second"])


@pytest.mark.slow  # an imgsweep run, about 20 s on 2 cores
def test_the_quick_recipe_benchmark_runs_imgsweep_alone_without_a_reference(tmp_path):
    out = tmp_path / "recipe.json"
    done = run_quick(
        tmp_path, "benchmarks.recipe", "--datasets", "textures", "--size", "32", "--out", str(out)
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Reference not given" in done.stdout and "avx512_bf16" in done.stdout
    assert (tmp_path / "real-datasets" / "textures" / real_datasets.MARKER).exists()
    (run,) = json.loads(out.read_text())["runs"]
    assert run["side"] == "imgsweep" and run["dataset"] == "textures"
    assert 0 <= run["test_accuracy"] <= 1 and 0 <= run["test_class_avg_accuracy"] <= 1
    assert len(run["train_images_per_second"]) == 1 and run["img/s"] > 0
