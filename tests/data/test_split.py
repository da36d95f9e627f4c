"""Splitting: stratified, deterministic, disjoint; whole sub-folders; a dedicated test list."""

from collections import Counter
from pathlib import Path

import pytest

from src.data.folders import ImageFile
from src.data.split import limit_per_class, read_test_list, split_files
from src.errors import UserError

SIDES = ("train", "val", "test")


def files_of(counts: dict[str, int], subdirs: int = 0) -> list[ImageFile]:
    files = []
    for label, n in counts.items():
        for i in range(n):
            middle = f"s{i % subdirs}/" if subdirs else ""
            relpath = f"{label}/{middle}{i:03d}.jpg"
            files.append(ImageFile(Path("/data") / relpath, relpath, label, 100 + i, 0))
    return files


def test_split_is_stratified_by_class_with_the_configured_ratios():
    files = files_of({"a": 100, "b": 40})
    split = split_files(files, seed=0, train_ratio=0.75, val_ratio=0.2)
    per_class = Counter((f.label, split[f.relpath]) for f in files)
    assert per_class[("a", "test")] == 25 and per_class[("b", "test")] == 10
    assert per_class[("a", "val")] == 15 and per_class[("b", "val")] == 6
    assert per_class[("a", "train")] == 60 and per_class[("b", "train")] == 24


def test_split_is_deterministic_for_a_seed_and_changes_with_it():
    files = files_of({"a": 30, "b": 30})
    assert split_files(files, seed=1) == split_files(list(reversed(files)), seed=1)
    assert split_files(files, seed=1) != split_files(files, seed=2)


def test_split_never_puts_a_file_on_two_sides_and_covers_every_file(tmp_path):
    """Through what the pipeline reads, each split's list of files: a file on two lists
    would leak into the test score, a file on none would be lost."""
    from src.data.prepare import SplitSettings, prepare_dataset
    from tests.conftest import write_dataset

    root = write_dataset(tmp_path / "set", {"a": 12, "b": 9, "c": 6})
    data = prepare_dataset(root, SplitSettings(0.75, 0.2), 0, None, None, 1)
    subsets = {side: [f.path for f in data.subset(side)] for side in SIDES}
    every = [p for side in SIDES for p in subsets[side]]
    assert len(every) == len(set(every)) == 27
    assert set(every) == set(root.glob("*/*.jpg")) and all(subsets.values())


def test_subdir_split_keeps_each_sub_folder_on_one_side():
    files = files_of({"a": 40, "b": 40}, subdirs=8)
    split = split_files(files, seed=0, by="subdir")
    sides = {}
    for f in files:
        folder = f.relpath.rsplit("/", 1)[0]
        sides.setdefault(folder, set()).add(split[f.relpath])
    assert all(len(s) == 1 for s in sides.values())
    assert {next(iter(s)) for s in sides.values()} == {"train", "val", "test"}


def test_a_class_too_small_to_split_is_a_clear_error():
    with pytest.raises(UserError, match=r"class 'b' has 2 images in /data/b.*at least 3"):
        split_files(files_of({"a": 10, "b": 2}), seed=0)


def test_subdir_split_needs_three_sub_folders_per_class():
    with pytest.raises(UserError, match="2 sub-folders"):
        split_files(files_of({"a": 10, "b": 10}, subdirs=2), seed=0, by="subdir")


def test_dedicated_test_list_overrides_the_random_test_split(tmp_path):
    files = files_of({"a": 10, "b": 10})
    listing = tmp_path / "test.tsv"
    listing.write_text("# dedicated test images\na\t001.jpg\nb\tb/004.jpg\n\n")
    chosen = read_test_list(listing, {f.relpath for f in files})
    split = split_files(files, seed=0, test_list=chosen)
    assert {r for r, s in split.items() if s == "test"} == {"a/001.jpg", "b/004.jpg"}
    assert Counter(split.values())["val"] == 4


def test_test_list_naming_an_unknown_image_is_refused_with_its_line(tmp_path):
    listing = tmp_path / "test.tsv"
    listing.write_text("a\t001.jpg\na\tmissing.jpg\n")
    with pytest.raises(UserError, match="line 2: no image a/missing.jpg"):
        read_test_list(listing, {f.relpath for f in files_of({"a": 5})})


def test_bad_ratios_are_refused():
    with pytest.raises(UserError, match="train_ratio"):
        split_files(files_of({"a": 5, "b": 5}), seed=0, train_ratio=1.5)


def test_max_images_per_class_keeps_a_seeded_sample():
    files = files_of({"a": 50, "b": 5})
    kept = limit_per_class(files, 10, seed=0)
    assert Counter(f.label for f in kept) == {"a": 10, "b": 5}
    assert kept == limit_per_class(files, 10, seed=0)


def moved_files(before: dict[str, str], after: dict[str, str]) -> list[tuple[str, str]]:
    """(from, to) for each file of both splits that changed sides."""
    return [(before[r], after[r]) for r in before.keys() & after.keys() if before[r] != after[r]]


@pytest.mark.parametrize("seed", range(6))
def test_adding_or_removing_an_image_moves_at_most_one_other_across_each_boundary(seed):
    """The issue's case: one image more in a class of 60. Each rank shifts by at most one,
    so at most one other file crosses into a neighbouring side, never test ↔ train."""
    files = files_of({"a": 60, "b": 45})
    before = split_files(files, seed)
    for name in ("a/new.jpg", "a/000a.jpg", "a/zzz.jpg", "b/extra.jpg"):
        added = ImageFile(Path("/data") / name, name, name[0], 1, 0)
        for changed in (files + [added], files[1:]):  # one added; one removed
            after = split_files(changed, seed)
            moves = moved_files(before, after)
            assert len(moves) <= 2, moves
            assert not {("train", "test"), ("test", "train")} & set(moves), moves
            for label, n in Counter(f.label for f in changed).items():
                sides = Counter(after[f.relpath] for f in changed if f.label == label)
                assert abs(sides["test"] - n * 0.25) <= 1
                assert abs(sides["val"] - (n - sides["test"]) * 0.2) <= 1


def test_a_test_list_keeps_sub_folders_whole_or_refuses_naming_the_files():
    files = files_of({"a": 12, "b": 12}, subdirs=4)  # a/s0/000.jpg, a/s1/001.jpg, ...
    listed = {"a/s0/000.jpg", "a/s0/004.jpg", "b/s1/001.jpg"}
    with pytest.raises(UserError, match=r"a/s0/008.jpg \(with a/s0/000.jpg\).*conflicts=move"):
        split_files(files, 0, by="subdir", test_list=listed)
    split = split_files(files, 0, by="subdir", test_list=listed, test_list_conflicts="move")
    test = {r for r, side in split.items() if side == "test"}
    assert test == {f.relpath for f in files if f.relpath.startswith(("a/s0/", "b/s1/"))}
    whole = split_files(files, 0, by="subdir", test_list=test)  # a list of whole folders
    assert {r for r, side in whole.items() if side == "test"} == test


def test_a_test_list_keeps_duplicate_groups_whole_even_across_classes():
    files = files_of({"a": 10, "b": 10})
    copies = [["a/001.jpg", "a/007.jpg"], ["a/002.jpg", "b/005.jpg"]]
    listed = {"a/001.jpg", "a/002.jpg"}
    with pytest.raises(UserError, match=r"2 file\(s\) out of a duplicate group"):
        split_files(files, 0, test_list=listed, together=copies)
    split = split_files(files, 0, test_list=listed, together=copies, test_list_conflicts="move")
    assert {r for r, side in split.items() if side == "test"} == {
        "a/001.jpg",
        "a/007.jpg",
        "a/002.jpg",
        "b/005.jpg",
    }
    with pytest.raises(UserError, match="test_list_conflicts must be 'refuse' or 'move'"):
        split_files(files, 0, test_list=listed, test_list_conflicts="ignore")
