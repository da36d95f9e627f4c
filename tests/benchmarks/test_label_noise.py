"""The label-noise benchmark: planting noise, the noisy folders, the arithmetic, and one
quick run end to end."""

import json
import os
from collections import Counter

import numpy as np
import pytest

from benchmarks import label_noise
from benchmarks.real_datasets import SETS, ensure_real_dataset
from tests.benchmarks.quick import run_quick


@pytest.fixture(scope="module")
def textures(tmp_path_factory):
    return ensure_real_dataset(tmp_path_factory.mktemp("real"), "textures", seed=0)


@pytest.mark.parametrize("share", [0.05, 0.1, 0.2, 0.33])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_share_flipped_is_exact_and_no_test_image_is_ever_flipped(textures, share, seed):
    truth, test, classes = label_noise.read_set(textures)
    given = label_noise.plant_noise(truth, test, share, np.random.default_rng(seed))
    flipped = [r for r in truth if given[r] != truth[r]]
    assert len(test) == 60 and len(truth) == 210
    assert len(flipped) == round(share * 150)
    assert not set(flipped) & test
    assert set(given.values()) <= set(classes) and set(given) == set(truth)


def test_confusable_flips_from_one_class_all_go_to_its_one_target(textures):
    truth, test, classes = label_noise.read_set(textures)
    targets = {"brick": "grass", "grass": "gravel", "gravel": "grass"}
    given = label_noise.plant_noise(truth, test, 0.1, np.random.default_rng(0), targets)
    moves = Counter((truth[r], given[r]) for r in truth if given[r] != truth[r])
    assert sum(moves.values()) == 15 and not {r for r in truth if given[r] != truth[r]} & test
    assert all(targets[source] == to for source, to in moves)


def test_a_random_flip_always_lands_on_another_class_and_uses_every_other_class(textures):
    truth, test, _ = label_noise.read_set(textures)
    given = label_noise.plant_noise(truth, test, 0.5, np.random.default_rng(3))
    moves = Counter((truth[r], given[r]) for r in truth if given[r] != truth[r])
    assert len(moves) == 6  # 3 classes x 2 others, each seen among 75 flips


def test_a_noisy_set_is_hard_links_in_the_given_class_folders_with_its_own_test_list(
    textures, tmp_path
):
    truth, test, _ = label_noise.read_set(textures)
    given = label_noise.plant_noise(truth, test, 0.2, np.random.default_rng(0))
    files = label_noise.noisy_layout(truth, given)
    noisy_test = {r for r, s in files.items() if s in test}
    folder = label_noise.write_set(textures / "images", files, noisy_test, tmp_path / "noisy")
    written = {p.relative_to(folder / "images").as_posix() for p in folder.rglob("*.jpg")}
    assert written == set(files) and len(written) == len(truth)
    for relpath, source in files.items():
        assert relpath.split("/")[0] == given[source]
        assert relpath.split("/")[1].startswith(truth[source] + label_noise.SEPARATOR)
        assert os.path.samefile(folder / "images" / relpath, textures / "images" / source)
    listed = folder.joinpath("test.tsv").read_text().splitlines()
    assert sorted(line.split("\t")[1] for line in listed) == sorted(noisy_test)
    assert len(noisy_test) == len(test)


def test_precision_and_recall_count_only_non_test_flags():
    flipped = {"a/1", "a/2", "b/3", "b/4"}
    flagged = {"a/1", "a/2", "b/3", "c/5", "t/1", "t/2"}  # 3 right, 1 wrong, 2 test images
    found = label_noise.detection(flagged, flipped, test={"t/1", "t/2", "t/3"})
    assert found["flagged"] == 4 and found["flagged_test"] == 2 and found["true_flags"] == 3
    assert found["precision"] == pytest.approx(3 / 4)
    assert found["recall"] == pytest.approx(3 / 4)
    none = label_noise.detection({"t/1"}, flipped, test={"t/1"})
    assert none["precision"] is None and none["recall"] == 0 and none["flagged_test"] == 1


def test_recovery_is_the_share_won_back_and_undefined_without_a_loss():
    assert label_noise.recovery(0.7, 0.85, 0.9) == pytest.approx(0.75)
    assert label_noise.recovery(0.7, 0.6, 0.9) == pytest.approx(-0.5)
    assert label_noise.recovery(0.9, 0.95, 0.9) is None
    assert label_noise.recovery(0.9, 0.95, 0.8) is None
    assert label_noise.recovery(None, 0.95, 0.8) is None


def test_the_confusable_target_is_the_most_frequent_suggestion_then_the_mean_probability():
    rows = [
        {"given_label": "a", "suggested_label": "c", "reason": "out-of-fold"},
        {"given_label": "a", "suggested_label": "c", "reason": "out-of-fold"},
        {"given_label": "a", "suggested_label": "b", "reason": "out-of-fold"},
        {"given_label": "b", "suggested_label": "a", "reason": "near-duplicate of x (a)"},
    ]
    columns = ["path", "true_label", "p_a", "p_b", "p_c"]
    data = [["1", "a", 0.5, 0.4, 0.1], ["2", "b", 0.1, 0.8, 0.1], ["3", "b", 0.1, 0.7, 0.2]]
    data.append(["4", "c", 0.2, 0.1, 0.7])
    targets = label_noise.confusable_targets(
        ["a", "b", "c"], rows, {"columns": columns, "data": data}
    )
    # a: flagged towards c twice (its held-out probabilities favour b); b: no out-of-fold
    # row (a duplicate does not count), so its mean probability picks c
    assert targets == {"a": "c", "b": "c", "c": "a"}


def test_the_quick_plan_is_one_case_and_the_full_one_ends_with_the_confusable_case():
    assert [c["noise"] for c in label_noise.cases([0.05, 0.1, 0.2], quick=True)] == ["10%"]
    full = label_noise.cases([0.05, 0.1, 0.2], quick=False)
    assert [c["noise"] for c in full] == ["5%", "10%", "20%", "10% confusable"]
    assert [c["confusable"] for c in full] == [False, False, False, True]


def test_a_failed_child_run_is_recorded_and_the_benchmark_goes_on(tmp_path, monkeypatch, capsys):
    """Children stood in for: a perfect detector (it flags exactly the images in another
    class's folder than their name's) and one removed-set run that fails."""

    def fake_run(module, folder, name, seed, scratch):
        if module == "src.run":
            if "20pct" in name:
                raise RuntimeError("src.run failed:\nTraceback ... the tail")
            return {"test_class_avg_accuracy": 0.9, "seconds": 1.0}
        paths = [
            p.relative_to(folder / "images").as_posix() for p in (folder / "images").rglob("*.jpg")
        ]
        wrong = [
            p for p in paths if "__" in p and p.split("/")[1].split("__")[0] != p.split("/")[0]
        ]
        row = {"given_label": "x", "suggested_label": "y", "reason": "out-of-fold"}
        return {
            "test_class_avg_accuracy": 0.95 if name.endswith("clean") else 0.8,
            "seconds": 1.0,
            "label_issues_line": "label issues: ...",
            "rows": [{**row, "path": p} for p in wrong],
            "predictions": {"columns": ["true_label"], "data": []},
        }

    monkeypatch.setattr(label_noise, "run_imgsweep", fake_run)
    monkeypatch.setattr(label_noise, "BENCH_DIR", tmp_path)
    out = tmp_path / "out.json"
    label_noise.main(["--datasets", "textures", "--seeds", "1", "--out", str(out)])
    assert "the tail" in capsys.readouterr().out  # tqdm.write: above the bar
    runs = json.loads(out.read_text())["runs"]
    assert [r["noise"] for r in runs] == ["0% (clean)", "5%", "10%", "20%", "10% confusable"]
    assert ["error" in r for r in runs] == [False, False, False, True, False]
    for r in runs[1:3] + runs[4:]:
        assert r["precision"] == 1 and r["recall"] == 1 and r["flagged_test"] == 0
        assert r["recovery"] == pytest.approx((0.9 - 0.8) / (0.95 - 0.8))
    (failed,) = [
        row for row in json.loads(out.read_text())["tables"]["per dataset"] if row["noise"] == "20%"
    ]
    assert failed["seeds"] == "0 (1 failed)" and failed["recovery"] == "n/a"


@pytest.mark.slow  # three imgsweep runs, about a minute on 2 cores
def test_the_quick_label_noise_benchmark_runs_the_whole_chain(tmp_path):
    out = tmp_path / "label_noise.json"
    done = run_quick(tmp_path, "benchmarks.label_noise", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "avx512_bf16" in done.stdout and "| recovery |" in done.stdout
    results = json.loads(out.read_text())
    assert results["machine"]["cpu"] and results["settings"]["seeds"] == [0]
    clean, noisy = results["runs"]
    assert "error" not in clean and "error" not in noisy, results["runs"]
    assert clean["noise"] == "0% (clean)" and clean["flipped"] == 0
    assert sorted(clean["confusable_targets"]) == sorted(SETS["textures"])
    assert noisy["dataset"] == "textures" and noisy["noise"] == "10%"
    assert noisy["flipped"] == 15 and 0 <= noisy["true_flags"] <= noisy["flagged"]
    for key in ("precision", "recall"):
        assert noisy[key] is None or 0 <= noisy[key] <= 1
    for key in ("accuracy_noisy", "accuracy_removed", "accuracy_oracle"):
        assert 0 <= noisy[key] <= 1
    assert noisy["accuracy_oracle"] == clean["accuracy_oracle"]
    assert "recovery" in noisy and "label issues:" in noisy["label_issues_line"]
    assert [row["noise"] for row in results["tables"]["per dataset"]] == ["0% (clean)", "10%"]
