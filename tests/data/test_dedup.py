"""Near-duplicates: dhash, grouping, the dedup command's report, quarantine and undo, and the
pipeline's leakage check and `group_duplicates` split."""

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from src.data.dedup import find_duplicates, quarantine, quarantine_folder, restore
from src.data.duplicates import (
    DUPLICATE_THRESHOLD,
    dhash,
    duplicate_groups,
    hamming,
    straddling,
)
from src.data.folders import ImageFile, find_images
from src.data.images import read_image
from src.data.inventory import CHECK_SCALE, check_images
from src.data.prepare import SplitSettings, prepare_dataset
from src.data.split import split_files
from src.data.synthetic import render_image
from src.dedup import DEFAULTS
from src.errors import UserError
from tests.conftest import ROOT

NEAR = 20  # bits: re-encoded and resized copies of the planted images are within this


def jpeg(pixels: np.ndarray, quality: int = 90) -> bytes:
    bgr = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    return cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def planted_set(root: Path, per_class: int = 6) -> Path:
    """Realistic distinct images, plus: an exact copy, a re-encoded copy (JPEG quality 50),
    a half-size copy, and a copy filed under another class."""
    originals = {}
    for k, label in enumerate(("dotted", "striped")):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            pixels = render_image(label, np.random.default_rng([7, k, i]), 256)
            originals[f"{label}/{i}.jpg"] = pixels
            (root / label / f"{i}.jpg").write_bytes(jpeg(pixels))
    (root / "dotted" / "0 copy.jpg").write_bytes((root / "dotted" / "0.jpg").read_bytes())
    (root / "dotted" / "1_q50.jpg").write_bytes(jpeg(originals["dotted/1.jpg"], 50))
    half = cv2.resize(
        originals["striped/2.jpg"], None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA
    )
    (root / "striped" / "2_small.jpg").write_bytes(jpeg(half))
    (root / "striped" / "from_dotted_3.jpg").write_bytes((root / "dotted" / "3.jpg").read_bytes())
    later = (root / "dotted" / "0.jpg").stat().st_mtime + 60  # copies are younger
    for copy in ("dotted/0 copy.jpg", "dotted/1_q50.jpg", "striped/from_dotted_3.jpg"):
        os.utime(root / copy, (later, later))
    return root


def files_in(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_dhash_is_the_original_256_bit_difference_hash_and_ignores_small_changes():
    pixels = render_image("leopard", np.random.default_rng(0), 256)
    value = dhash(pixels)
    assert len(value) == 64 and dhash(pixels, hash_size=8) != value  # 256 bits, as hex
    brighter = np.clip(pixels.astype(int) + 20, 0, 255).astype(np.uint8)
    assert hamming(value, dhash(brighter)) <= 8
    other = render_image("leopard", np.random.default_rng(1), 256)
    assert hamming(value, dhash(other)) > 60


def test_groups_link_transitively_and_threshold_zero_means_identical_hashes():
    hashes = {"a": "00", "b": "01", "c": "03", "d": "ff", "e": "00", "broken": ""}
    assert duplicate_groups(hashes) == [["a", "e"]]
    assert duplicate_groups(hashes, threshold=1) == [["a", "b", "c", "e"]]
    assert straddling(
        [["a", "e"], ["b", "c"]], {"a": "train", "e": "test", "b": "val", "c": "val"}
    ) == [["a", "e"]]


def test_planted_exact_and_near_duplicates_are_found_and_the_biggest_copy_is_kept(tmp_path):
    root = planted_set(tmp_path / "set")
    exact, checks = find_duplicates(root, 0, 16, None, 2)
    assert [(g.keep, g.drop) for g in exact] == [
        ("dotted/0.jpg", [("dotted/0 copy.jpg", 0)]),
        ("dotted/3.jpg", [("striped/from_dotted_3.jpg", 0)]),
    ]
    near, _ = find_duplicates(root, NEAR, 16, None, 2)
    kept = {g.keep: [r for r, _ in g.drop] for g in near}
    assert kept == {
        "dotted/0.jpg": ["dotted/0 copy.jpg"],
        "dotted/1.jpg": ["dotted/1_q50.jpg"],
        "dotted/3.jpg": ["striped/from_dotted_3.jpg"],
        "striped/2.jpg": ["striped/2_small.jpg"],  # the full-size one stays
    }
    assert checks["striped/2_small.jpg"].width == 128


def test_quarantine_moves_copies_next_to_the_dataset_and_undo_puts_them_back(tmp_path):
    root = planted_set(tmp_path / "set")
    before = {p: (root / p).read_bytes() for p in files_in(root)}
    groups, _ = find_duplicates(root, NEAR, 16, None, 2)
    moved = quarantine(root, groups)
    folder = quarantine_folder(root)
    assert folder == tmp_path / "set-quarantine"
    assert sorted(moved) == sorted(files_in(folder) - {"quarantined.tsv"})
    assert len(moved) == 4 and files_in(root) == set(before) - set(moved)
    log = (folder / "quarantined.tsv").read_text().splitlines()
    assert log[0] == "path\tkept\tdistance" and "dotted/0 copy.jpg\tdotted/0.jpg\t0" in log
    assert find_duplicates(root, NEAR, 16, None, 2)[0] == []

    restored, blocked = restore(root)
    assert sorted(restored) == sorted(moved) and blocked == []
    assert {p: (root / p).read_bytes() for p in files_in(root)} == before
    assert not folder.exists()


def test_quarantine_never_overwrites_and_undo_never_overwrites(tmp_path):
    root = planted_set(tmp_path / "set")
    groups, _ = find_duplicates(root, 0, 16, None, 2)
    folder = quarantine_folder(root)
    (folder / "dotted").mkdir(parents=True)
    (folder / "dotted" / "0 copy.jpg").write_bytes(b"an earlier one")
    with pytest.raises(UserError, match="already exists.*nothing was moved"):
        quarantine(root, groups)
    assert (root / "dotted" / "0 copy.jpg").exists()  # nothing moved

    (root / "dotted" / "0 copy.jpg").unlink()
    (root / "dotted" / "0 copy.jpg").write_bytes(b"a new file under the old name")
    restored, blocked = restore(root)
    assert restored == [] and blocked == ["dotted/0 copy.jpg"]
    assert (root / "dotted" / "0 copy.jpg").read_bytes() == b"a new file under the old name"
    assert (folder / "dotted" / "0 copy.jpg").read_bytes() == b"an earlier one"


def test_the_dedup_command_reports_first_and_moves_only_with_apply(tmp_path):
    root = planted_set(tmp_path / "set")

    def dedup(*args):
        result = subprocess.run(
            [sys.executable, "-m", "src.dedup", f"root={root}", f"data_dir={tmp_path}", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    report = dedup()  # at the default threshold: the re-encoded and resized copies too
    assert report.splitlines()[:4] == [
        f"{root}: 16 files, 4 group(s) of duplicates (dhash 256 bits, threshold 16), "
        "4 to set aside",
        "group 1:",
        "  keep dotted/0.jpg  256x192",
        "  drop dotted/0 copy.jpg  256x192, distance 0",
    ]
    assert "group 3:  (in 2 classes: dotted, striped; check the label)" in report
    assert f"pictured in {root}/duplicates.png" in report  # beside the class folders
    assert read_image(root / "duplicates.png").shape[0] > 2 * 96  # a row per group
    images = files_in(root) - {"duplicates.png"}
    assert "dry run, nothing moved" in report and len(images) == 16
    applied = dedup("apply=true")
    assert f"moved 4 file(s) to {root}-quarantine/" in applied and "undo=true" in applied
    assert files_in(root) - {"duplicates.png"} == images - {
        "dotted/0 copy.jpg",
        "dotted/1_q50.jpg",
        "striped/2_small.jpg",
        "striped/from_dotted_3.jpg",
    }
    assert "moved 4 file(s) back" in dedup("undo=true")
    assert files_in(root) - {"duplicates.png"} == images


def unit_files(counts: dict[str, int]) -> list[ImageFile]:
    return [
        ImageFile(Path("/d") / f"{label}/{i:02d}.jpg", f"{label}/{i:02d}.jpg", label, 1, 0)
        for label, n in counts.items()
        for i in range(n)
    ]


def test_grouped_duplicates_never_straddle_the_split():
    files = unit_files({"a": 40, "b": 30})
    groups = [
        [f"a/{i:02d}.jpg", f"a/{i + 1:02d}.jpg", f"a/{i + 2:02d}.jpg"] for i in range(0, 30, 3)
    ]
    groups += [["b/00.jpg", "b/05.jpg"], ["b/10.jpg", "b/11.jpg", "b/29.jpg"]]
    for seed in range(5):
        loose = split_files(files, seed)
        grouped = split_files(files, seed, together=groups)
        assert straddling(groups, loose), "the test needs a split that leaks without grouping"
        assert straddling(groups, grouped) == []
        assert set(grouped) == {f.relpath for f in files}
        sides = Counter(grouped.values())
        assert sides["test"] >= 12 and sides["val"] >= 6  # still roughly the configured ratios


def test_a_class_made_of_one_duplicate_group_cannot_be_split(tmp_path):
    files = unit_files({"a": 10, "b": 3})
    with pytest.raises(UserError, match=r"class 'b' has 2 images or groups"):
        split_files(files, 0, together=[["b/00.jpg", "b/01.jpg"]])


def test_the_pipeline_reports_leaky_duplicates_and_grouping_removes_them(tmp_path):
    root = planted_set(tmp_path / "set", per_class=8)
    data = prepare_dataset(
        root,
        SplitSettings(0.75, 0.2, group_duplicates=False, duplicate_threshold=NEAR),
        0,
        None,
        None,
        2,
    )
    assert [len(g) for g in data.duplicates] == [2, 2, 2, 2]
    leaks = data.leaky_duplicates()
    assert leaks and all(len({data.split[r] for r in g}) > 1 for g in leaks)
    grouped = prepare_dataset(
        root,
        SplitSettings(0.75, 0.2, group_duplicates=True, duplicate_threshold=NEAR),
        0,
        None,
        None,
        2,
    )
    # the copy filed under another class cannot follow its twin: the split is per class
    assert grouped.leaky_duplicates() in ([], [["dotted/3.jpg", "striped/from_dotted_3.jpg"]])
    within_class = [g for g in grouped.duplicates if len({r.split("/")[0] for r in g}) == 1]
    assert straddling(within_class, grouped.split) == []


def test_hashes_are_cached_with_the_image_checks_and_redone_for_another_hash_size(tmp_path):
    root = planted_set(tmp_path / "set")
    _, files = find_images(root)
    cache = tmp_path / "cache"
    first = check_images(files, cache, 2)
    assert all(len(check.dhash) == 64 for check in first.values())
    (cache_file,) = cache.glob("*.json")
    content = json.loads(cache_file.read_text())
    assert content["hash_size"] == 16
    content["files"]["dotted/0.jpg"]["dhash"] = "ab" * 32  # what only the cache can know
    cache_file.write_text(json.dumps(content))
    assert check_images(files, cache, 2)["dotted/0.jpg"].dhash == "ab" * 32  # nothing decoded
    smaller = check_images(files, cache, 2, hash_size=8)
    expected = dhash(read_image(root / "dotted/0.jpg", at_least=CHECK_SCALE), hash_size=8)
    assert smaller["dotted/0.jpg"].dhash == expected and len(expected) == 16


def test_at_its_defaults_dedup_groups_reencoded_and_resized_real_photos_and_nothing_else(
    tmp_path,
):
    """Real photos (scikit-image's and the shared t-shirt photo), each with its JPEG
    re-encodings (quality 50-95), 75 % and 50 % downscales and both together, and its four
    disjoint quarters: at the command's defaults, at least 95 % of the copies are grouped
    with their original, and no group holds two distinct images."""
    from benchmarks.dedup_threshold import encode, photos, quarters, variants

    chosen = ("astronaut", "camera", "moon", "brick", "chelsea", "testImg")
    identity, originals = {}, []
    for name, pixels in photos().items():
        if name not in chosen:
            continue
        folder = tmp_path / "set" / name
        folder.mkdir(parents=True)
        (folder / "original.png").write_bytes(encode(pixels, None))
        identity[f"{name}/original.png"] = name
        originals.append(name)
        for copy, data in variants(pixels).items():
            file = f"{copy}.png" if data.startswith(b"\x89PNG") else f"{copy}.jpg"
            (folder / file).write_bytes(data)
            identity[f"{name}/{file}"] = name
        for part, data in quarters(pixels).items():
            (folder / f"crop_{part}.png").write_bytes(data)
            identity[f"{name}/crop_{part}.png"] = f"{name}/{part}"
    assert len(originals) >= 5, "needs scikit-image's sample photos (pip install scikit-image)"
    groups, _ = find_duplicates(
        tmp_path / "set", DEFAULTS["threshold"], DEFAULTS["hash_size"], None, 2
    )
    members = [[g.keep, *(r for r, _ in g.drop)] for g in groups]
    assert [g for g in members if len({identity[r] for r in g}) > 1] == []
    copies = [r for r, who in identity.items() if "/" not in who and not r.endswith("original.png")]
    with_original = {r for g in members for r in g if any(o.endswith("original.png") for o in g)}
    grouped = sum(1 for r in copies if r in with_original)
    assert grouped / len(copies) >= 0.95, f"{grouped} of {len(copies)} copies grouped"


def test_the_run_and_the_dedup_command_share_the_measured_default_threshold():
    from omegaconf import OmegaConf

    for name in ("folder", "synthetic_textures", "fashion_texture"):
        split = OmegaConf.load(ROOT / "conf" / "dataset" / f"{name}.yaml").split
        assert split.duplicate_threshold == DEFAULTS["threshold"] == DUPLICATE_THRESHOLD > 0
