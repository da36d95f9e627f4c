"""From a folder to a split dataset: bad folders are one clear error, bad files are skipped."""

from pathlib import Path

import pytest

from src.data.folders import fingerprint
from src.data.prepare import SplitSettings, leakage_warning, prepare_dataset
from src.errors import UserError
from tests.conftest import image_bytes, write_dataset


def prepare(root: Path, cache: Path | None = None):
    return prepare_dataset(root, SplitSettings(0.75, 0.2), 0, None, cache, 2)


def test_bad_files_are_skipped_with_a_reason_and_the_rest_is_split(tmp_path):
    root = write_dataset(tmp_path / "set", {"cats": 6, "dogs": 6})
    (root / "cats" / "empty.jpg").write_bytes(b"")
    (root / "cats" / "page.png").write_bytes(b"<html>not found</html>")
    (root / "dogs" / "cut.jpg").write_bytes(image_bytes(size=(300, 300))[:900])
    (root / "dogs" / "notes.txt").write_text("not an image, not even looked at")
    data = prepare(root)
    assert dict(data.skipped) == {
        "cats/empty.jpg": "empty file (0 bytes)",
        "cats/page.png": "not an image (unrecognised format)",
        "dogs/cut.jpg": "corrupt or truncated JPEG data",
    }
    assert len(data.files) == 12 and set(data.split) == {f.relpath for f in data.files}
    assert data.classes == ["cats", "dogs"]


def test_image_checks_are_cached_and_redone_for_changed_files(tmp_path):
    root = write_dataset(tmp_path / "set", {"a": 4, "b": 4})
    cache = tmp_path / "cache"
    assert not prepare(root, cache).skipped
    (root / "a" / "a_000.jpg").write_bytes(b"broken now")
    assert [p for p, _ in prepare(root, cache).skipped] == ["a/a_000.jpg"]


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        (None, "does not exist"),
        ({}, "no class folders"),
        ({"only": 5}, "only one class"),
        ({"a": 5, "b": 0}, "without images"),
        ({"a": 5, "b": 2}, "class 'b' has 2 images"),
    ],
    ids=["missing-root", "empty", "single-class", "empty-class", "too-few"],
)
def test_unusable_datasets_are_one_clear_error(tmp_path, layout, message):
    root = tmp_path / "set"
    if layout is not None:
        root.mkdir()
        write_dataset(root, layout)
    with pytest.raises(UserError, match=message):
        prepare(root)


def test_fingerprint_depends_on_content_not_location(tmp_path):
    first = prepare(write_dataset(tmp_path / "one", {"a": 4, "b": 4}))
    second = prepare(write_dataset(tmp_path / "two", {"a": 4, "b": 4}))
    assert first.fingerprint == second.fingerprint
    (tmp_path / "two" / "a" / "a_000.jpg").write_bytes(image_bytes(size=(60, 60)))
    third = prepare(tmp_path / "two")
    assert fingerprint(third.files) != first.fingerprint


def with_copies(root: Path) -> Path:
    """A dataset with an exact copy of a/a_000.jpg in its own class and one in class b."""
    write_dataset(root, {"a": 6, "b": 6})
    original = (root / "a" / "a_000.jpg").read_bytes()
    (root / "a" / "a_000 copy.jpg").write_bytes(original)
    (root / "b" / "from_a.jpg").write_bytes(original)
    return root


def prepare_with_list(root: Path, tmp_path: Path, group: bool, conflicts: str = "refuse"):
    listing = tmp_path / "test.tsv"
    listing.write_text("a\ta_000.jpg\nb\tb_001.jpg\n")
    split = SplitSettings(
        test_list=str(listing),
        test_list_conflicts=conflicts,
        group_duplicates=group,
        duplicate_threshold=16,
    )
    return prepare_dataset(root, split, 0, None, None, 2)


def test_a_test_list_takes_the_copies_of_its_images_to_test_or_refuses(tmp_path):
    root = with_copies(tmp_path / "set")
    with pytest.raises(UserError, match=r"a/a_000 copy.jpg \(with a/a_000.jpg\)"):
        prepare_with_list(root, tmp_path, group=True)
    data = prepare_with_list(root, tmp_path, group=True, conflicts="move")
    assert {r for r, side in data.split.items() if side == "test"} == {
        "a/a_000.jpg",
        "a/a_000 copy.jpg",
        "b/from_a.jpg",
        "b/b_001.jpg",
    }
    assert data.leaky_duplicates() == []


def test_the_leakage_advice_matches_the_settings_in_force(tmp_path, caplog):
    root = with_copies(tmp_path / "set")
    with caplog.at_level("WARNING"):
        loose = prepare_with_list(root, tmp_path, group=False)
    assert loose.leaky_duplicates() == [["a/a_000 copy.jpg", "a/a_000.jpg", "b/from_a.jpg"]]
    assert "group_duplicates=true keeps each group on one side" in caplog.text
    sides = {"a/x.jpg": "train", "b/x.jpg": "test"}
    cross_class = leakage_warning([["a/x.jpg", "b/x.jpg"]], sides, True, 16, root)
    assert "group_duplicates" not in cross_class and "check their labels" in cross_class
    assert f"python -m src.dedup root={root} threshold=16" in cross_class
