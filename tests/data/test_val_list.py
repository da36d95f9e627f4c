"""A dedicated validation list (dataset.split.val_list): the listed images are validation,
with or without a test list, and each way of getting it wrong is one line naming it."""

import re
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from src.data.split import read_test_list, split_files
from src.errors import UserError
from tests.data.test_split import files_of

VAL = "dataset.split.val_list"


@st.composite
def listed_datasets(draw):
    """(files, val list, test list or None): 2-4 classes of 3-15 images, each class with
    1 to n-2 listed validation images, and maybe a test list (0 or more a class) that leaves
    one training image at least."""
    counts = draw(st.lists(st.integers(3, 15), min_size=2, max_size=4))
    files = files_of({f"c{k}": n for k, n in enumerate(counts)})
    with_test = draw(st.booleans())
    val, test = set(), set() if with_test else None
    for k, n in enumerate(counts):
        order = draw(st.permutations(range(n)))
        n_val = draw(st.integers(1, n - 2))  # two left: train and test when test is drawn
        val |= {f"c{k}/{i:03d}.jpg" for i in order[:n_val]}
        if with_test:
            n_test = draw(st.integers(0, n - n_val - 1))
            test |= {f"c{k}/{i:03d}.jpg" for i in order[n_val : n_val + n_test]}
    return files, val, test


@settings(max_examples=80, deadline=None)
@given(listed_datasets(), st.integers(0, 3), st.sampled_from([0.5, 0.75, 0.9]))
def test_listed_files_are_exactly_val_the_test_list_test_and_the_rest_train(case, seed, ratio):
    files, val, test = case
    split = split_files(files, seed, train_ratio=ratio, val_list=val, test_list=test)
    assert sorted(split) == sorted(f.relpath for f in files)  # every file, once
    assert {r for r, side in split.items() if side == "val"} == val
    if test is not None:
        assert {r for r, side in split.items() if side == "test"} == test
        assert {r for r, side in split.items() if side == "train"} == split.keys() - val - test
    else:  # drawn from the unlisted files: one test and one train image at least a class
        sides = Counter((r.split("/")[0], side) for r, side in split.items())
        for label in {f.label for f in files}:
            assert sides[label, "test"] >= 1 and sides[label, "train"] >= 1


def test_without_a_test_list_test_takes_1_minus_train_ratio_of_the_unlisted_files():
    files = files_of({"a": 24, "b": 24})
    val = {f"{label}/{i:03d}.jpg" for label in "ab" for i in range(4)}
    split = split_files(files, 0, train_ratio=0.75, val_ratio=0.5, val_list=val)
    assert Counter(split.values()) == {"val": 8, "test": 10, "train": 30}  # 20 unlisted a class


def test_a_val_list_reads_as_a_test_list_does_and_its_errors_name_it(tmp_path):
    files = files_of({"a": 5, "b": 5})
    listing = tmp_path / "val.tsv"
    listing.write_text("# validation\na\t001.jpg\nb\tb/004.jpg\n")
    known = {f.relpath for f in files}
    assert read_test_list(listing, known, VAL) == {"a/001.jpg", "b/004.jpg"}
    with pytest.raises(
        UserError, match=f"^{VAL}: {re.escape(str(tmp_path))}/nowhere.tsv does not exist$"
    ):
        read_test_list(tmp_path / "nowhere.tsv", known, VAL)
    listing.write_bytes("a\tcaf\xe9.jpg\n".encode("latin-1"))
    with pytest.raises(UserError, match=f"^{VAL}={re.escape(str(listing))}: line 1 is not UTF-8"):
        read_test_list(listing, known, VAL)


def test_a_val_list_naming_an_image_not_in_the_dataset_is_refused_with_its_line(tmp_path):
    listing = tmp_path / "val.tsv"
    listing.write_text("a\t001.jpg\nb\tmissing.jpg\n")
    with pytest.raises(UserError, match="val.tsv, line 2: no image b/missing.jpg in the dataset"):
        read_test_list(listing, {f.relpath for f in files_of({"a": 5, "b": 5})}, VAL)


def test_an_image_on_both_lists_is_refused_naming_the_first():
    files = files_of({"a": 6, "b": 6})
    val, test = {"a/000.jpg", "b/002.jpg", "b/001.jpg"}, {"b/002.jpg", "b/001.jpg", "a/005.jpg"}
    expected = r"^b/001.jpg \(and 1 more\) is in both dataset.split.test_list and val_list; "
    with pytest.raises(UserError, match=expected):
        split_files(files, 0, val_list=val, test_list=test)


def test_a_class_without_a_listed_validation_image_is_refused_naming_it():
    with pytest.raises(UserError, match=f"^{VAL} has no image of class 'b'; validation needs"):
        split_files(files_of({"a": 6, "b": 6, "c": 6}), 0, val_list={"a/000.jpg", "c/001.jpg"})


def test_a_class_left_without_a_training_image_is_refused_naming_it():
    files = files_of({"a": 6, "b": 3})
    val, test = {"a/000.jpg", "b/000.jpg", "b/001.jpg"}, {"a/001.jpg", "b/002.jpg"}
    with pytest.raises(
        UserError,
        match=r"^class 'b' has 0 images outside the test and validation lists in /data/b; "
        r"the split needs at least 1 \(one for train\)$",
    ):
        split_files(files, 0, val_list=val, test_list=test)
    with pytest.raises(
        UserError,
        match=r"^class 'b' has 1 images outside the validation list in /data/b; "
        r"the split needs at least 2 \(one each for train and test\)$",
    ):
        split_files(files, 0, val_list=val)


def test_a_val_list_keeps_sub_folders_whole_or_refuses_naming_the_files():
    files = files_of({"a": 12, "b": 12}, subdirs=4)  # a/s0/000.jpg, a/s1/001.jpg, ...
    listed = {"a/s0/000.jpg", "a/s0/004.jpg", "b/s1/001.jpg"}
    with pytest.raises(
        UserError,
        match=rf"^{VAL} leaves 3 file\(s\) out of a sub-folder it puts in val: a/s0/008.jpg "
        r"\(with a/s0/000.jpg\).*test_list_conflicts=move to move them to val$",
    ):
        split_files(files, 0, by="subdir", val_list=listed)
    split = split_files(files, 0, by="subdir", val_list=listed, test_list_conflicts="move")
    val = {r for r, side in split.items() if side == "val"}
    assert val == {f.relpath for f in files if f.relpath.startswith(("a/s0/", "b/s1/"))}


def test_a_val_list_keeps_duplicate_groups_whole_and_apart_from_the_test_list():
    files = files_of({"a": 10, "b": 10})
    copies = [["a/001.jpg", "a/007.jpg"], ["b/003.jpg", "b/004.jpg"]]
    val, test = {"a/001.jpg", "b/000.jpg"}, {"a/002.jpg", "b/003.jpg"}
    apart = {"a/002.jpg", "b/005.jpg"}  # a test list of no group: val's group is refused
    with pytest.raises(UserError, match=r"^dataset.split.val_list leaves 1 file\(s\) out of a "):
        split_files(files, 0, val_list=val, test_list=apart, together=copies)
    moved = split_files(
        files, 0, val_list=val, test_list=test, together=copies, test_list_conflicts="move"
    )
    assert {r for r, side in moved.items() if side == "val"} == val | {"a/007.jpg"}
    assert {r for r, side in moved.items() if side == "test"} == test | {"b/004.jpg"}
    # a copy listed for validation of an image listed for test: the group cannot go to both
    with pytest.raises(UserError, match=r"^b/003.jpg \(and 1 more\) goes to test and val with"):
        split_files(
            files,
            0,
            val_list=val | {"b/004.jpg"},
            test_list=test,
            together=copies,
            test_list_conflicts="move",
        )


def test_prepare_dataset_passes_the_val_list(tmp_path):
    from src.data.prepare import SplitSettings, prepare_dataset
    from tests.conftest import write_dataset

    root = write_dataset(tmp_path / "set", {"a": 6, "b": 6})
    listing = tmp_path / "val.tsv"
    listing.write_text("a\ta_000.jpg\nb\tb_003.jpg\nb\tb_004.jpg\n")
    data = prepare_dataset(root, SplitSettings(val_list=str(listing)), 0, None, None, 1)
    assert {f.relpath for f in data.subset("val")} == {"a/a_000.jpg", "b/b_003.jpg", "b/b_004.jpg"}
