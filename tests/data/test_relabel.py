"""Relabelling from a CSV of `path,new_label`: checked in full before anything moves."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from src.data.folders import find_images
from src.data.quarantine import quarantine_folder
from src.data.relabel import apply_moves, read_moves, undo_file
from src.errors import UserError
from src.relabel import relabel as relabel_main
from tests.conftest import ROOT, write_dataset


@pytest.fixture
def root(tmp_path):
    root = write_dataset(tmp_path / "set", {"dotted": 3, "striped": 3})
    (root / "dotted" / "shop").mkdir()
    (root / "dotted" / "shop" / "a.jpg").write_bytes((root / "dotted/dotted_000.jpg").read_bytes())
    return root


def csv_file(tmp_path, text: str):
    path = tmp_path / "relabel.csv"
    path.write_text(text, encoding="utf-8")
    return path


def every_file(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_moves_are_checked_then_applied_and_undone(root, tmp_path):
    before = every_file(root)
    moves_file = csv_file(
        tmp_path,
        "path,new_label\ndotted/dotted_001.jpg,striped\ndotted/shop/a.jpg,striped\n"
        "striped/striped_000.jpg,striped\n",
    )
    moves, unchanged = read_moves(moves_file, root)
    assert [(m.source, m.target) for m in moves] == [
        ("dotted/dotted_001.jpg", "striped/dotted_001.jpg"),
        ("dotted/shop/a.jpg", "striped/shop/a.jpg"),  # the sub-folder comes along
    ]
    assert unchanged == ["striped/striped_000.jpg"]
    undo = undo_file(moves_file)
    apply_moves(root, moves, undo)
    assert (root / "striped" / "shop" / "a.jpg").exists()
    assert not (root / "dotted" / "dotted_001.jpg").exists()
    assert undo.name == "relabel.undo.csv" and undo_file(moves_file).name == "relabel.undo-2.csv"
    apply_moves(root, read_moves(undo, root)[0])
    assert every_file(root) == before


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("dotted/nope.jpg,striped", r"line 1: no image 'dotted/nope.jpg' in .*; nothing was moved"),
        ("dotted/dotted_000.jpg,strped", r"line 1: 'strped' is not a class of .*\(dotted, striped"),
        ("../outside.jpg,striped", r"line 1: no image '../outside.jpg'"),
        ("dotted/dotted_000.jpg,striped,extra", r"line 1: expected 'path,new_label'"),
        (
            "dotted/dotted_000.jpg,striped\ndotted/dotted_000.jpg,dotted",
            r"line 2: dotted/dotted_000.jpg is already moved on line 1",
        ),
        ("nope.jpg,striped\nalso-not.jpg,x", r"line 1: .*\(1 more problem\(s\) after it\)"),
    ],
    ids=["unknown-path", "unknown-label", "outside-root", "bad-row", "listed-twice", "several"],
)
def test_bad_rows_refuse_the_whole_file(root, tmp_path, rows, message):
    before = every_file(root)
    with pytest.raises(UserError, match=message):
        read_moves(csv_file(tmp_path, rows + "\n"), root)
    assert every_file(root) == before


def test_a_move_onto_an_existing_file_is_refused(root, tmp_path):
    (root / "striped" / "dotted_000.jpg").write_bytes(b"already here")
    with pytest.raises(UserError, match="dotted_000.jpg already exists; nothing is overwritten"):
        read_moves(csv_file(tmp_path, "dotted/dotted_000.jpg,striped\n"), root)
    assert (root / "striped" / "dotted_000.jpg").read_bytes() == b"already here"


def test_the_command_shows_a_dry_run_first_and_moves_with_apply(root, tmp_path):
    moves = csv_file(tmp_path, "path,new_label\ndotted/dotted_002.jpg,striped\n")

    def relabel(*args):
        return subprocess.run(
            [sys.executable, "-m", "src.relabel", f"moves={moves}", f"root={root}", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    dry = relabel()
    assert dry.returncode == 0 and "dotted/dotted_002.jpg → striped/dotted_002.jpg" in dry.stdout
    assert "dry run, nothing moved" in dry.stdout and (root / "dotted" / "dotted_002.jpg").exists()
    applied = relabel("apply=true")
    assert applied.returncode == 0 and (root / "striped" / "dotted_002.jpg").exists()
    undo = f"to undo: python -m src.relabel moves={tmp_path}/relabel.undo.csv"
    assert undo in applied.stdout
    again = relabel("apply=true")
    assert again.returncode == 1 and again.stderr.count("\n") == 1
    assert "no image 'dotted/dotted_002.jpg'" in again.stderr


def contents(root) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_dash_sets_images_aside_in_the_quarantine_and_the_undo_brings_them_back(
    root, tmp_path, capsys
):
    before, folder = contents(root), quarantine_folder(root)
    moves_file = csv_file(
        tmp_path,
        "path,new_label\ndotted/shop/a.jpg,-\nstriped/striped_001.jpg,-\n"
        "dotted/dotted_000.jpg,striped\n",
    )
    assert relabel_main([f"moves={moves_file}", f"root={root}", "apply=true"]) == 0
    assert (
        "dotted/shop/a.jpg → set aside: set-quarantine/dotted/shop/a.jpg" in capsys.readouterr().out
    )
    assert folder == root.with_name("set-quarantine")  # the one dedup uses
    assert contents(folder) == {
        "dotted/shop/a.jpg": before["dotted/shop/a.jpg"],
        "striped/striped_001.jpg": before["striped/striped_001.jpg"],
        "quarantined.tsv": b"path\tkept\tdistance\n"
        b"dotted/shop/a.jpg\t\t\nstriped/striped_001.jpg\t\t\n",
    }
    _, files = find_images(root)  # what a run sees
    assert {f.relpath for f in files} == set(before) - {
        "dotted/shop/a.jpg",
        "striped/striped_001.jpg",
        "dotted/dotted_000.jpg",
    } | {"striped/dotted_000.jpg"}

    undo = tmp_path / "relabel.undo.csv"
    assert undo.read_text().splitlines() == [
        "path,new_label",
        "-/dotted/shop/a.jpg,dotted",
        "-/striped/striped_001.jpg,striped",
        "striped/dotted_000.jpg,dotted",
    ]
    assert relabel_main([f"moves={undo}", f"root={root}", "apply=true"]) == 0
    assert contents(root) == before and not folder.exists()

    # and the undo's undo sets them aside again: both directions are plain moves
    assert (
        relabel_main([f"moves={tmp_path / 'relabel.undo.undo.csv'}", f"root={root}", "apply=true"])
        == 0
    )
    assert sorted(contents(folder)) == [
        "dotted/shop/a.jpg",
        "quarantined.tsv",
        "striped/striped_001.jpg",
    ]


def test_bringing_back_an_image_set_aside_by_hand_leaves_what_dedup_set_aside(root, tmp_path):
    folder = quarantine_folder(root)
    (folder / "dotted").mkdir(parents=True)
    (folder / "dotted" / "copy.jpg").write_bytes(b"a copy of dotted_000.jpg")
    log = "path\tkept\tdistance\ndotted/copy.jpg\tdotted/dotted_000.jpg\t0\n"
    (folder / "quarantined.tsv").write_text(log)
    moves_file = csv_file(tmp_path, "striped/striped_002.jpg,-\n")
    moves = read_moves(moves_file, root)[0]
    apply_moves(root, moves, undo := undo_file(moves_file))
    apply_moves(root, read_moves(undo, root)[0])
    assert (root / "striped" / "striped_002.jpg").exists()
    assert contents(folder) == {
        "dotted/copy.jpg": b"a copy of dotted_000.jpg",
        "quarantined.tsv": log.encode(),
    }
    # a quarantined image named by its full path, put into another class
    moves = read_moves(csv_file(tmp_path, f"{folder}/dotted/copy.jpg,striped\n"), root)[0]
    assert [(m.source, m.target) for m in moves] == [("-/dotted/copy.jpg", "striped/copy.jpg")]


def test_a_move_that_fails_midway_leaves_an_undo_of_exactly_the_moves_made(root, tmp_path):
    """The second of three moves cannot be made (a file stands where its sub-folder goes):
    the first stays made, recorded in the undo file, which brings it back."""
    before = contents(root)
    (root / "striped" / "shop").write_bytes(b"a file where the sub-folder would go")
    moves_file = csv_file(
        tmp_path,
        "dotted/dotted_001.jpg,striped\ndotted/shop/a.jpg,striped\ndotted/dotted_002.jpg,striped\n",
    )
    with pytest.raises(UserError) as stopped:
        relabel_main([f"moves={moves_file}", f"root={root}", "apply=true"])
    undo = tmp_path / "relabel.undo.csv"
    assert str(stopped.value).startswith(
        "cannot move dotted/shop/a.jpg to striped/shop/a.jpg (File exists); stopped after 1 of "
        f"3 move(s); to undo those: python -m src.relabel moves={undo} root={root} apply=true"
    )
    assert undo.read_text().splitlines() == ["path,new_label", "striped/dotted_001.jpg,dotted"]
    assert (root / "dotted" / "dotted_002.jpg").exists()  # not reached
    assert relabel_main([f"moves={undo}", f"root={root}", "apply=true"]) == 0
    assert contents(root) == {**before, "striped/shop": b"a file where the sub-folder would go"}


@settings(max_examples=15, deadline=None)
@given(count=st.integers(1, 5), data=st.data())
def test_wherever_the_moves_stop_the_undo_file_lists_the_moves_made(count, data):
    """Stopped at any move (one that fails, or Ctrl-C as it starts): the undo file lists
    exactly the moves before it, and undoing them leaves the folders as they were."""
    stop = data.draw(st.integers(0, count - 1), label="stop")
    interrupt = data.draw(st.booleans(), label="interrupt")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = write_dataset(tmp / "set", {"dotted": count, "striped": 1})
        before = contents(root)
        moves_file = csv_file(
            tmp, "".join(f"dotted/dotted_{i:03d}.jpg,striped\n" for i in range(count))
        )
        moves = read_moves(moves_file, root)[0]
        failing = moves[stop]
        real_rename = os.rename

        def rename(source, target):
            if Path(target).resolve() == (root / failing.target).resolve():
                if interrupt:
                    raise KeyboardInterrupt
                raise PermissionError(13, "Permission denied")
            real_rename(source, target)

        undo = undo_file(moves_file)
        with (
            mock.patch("src.data.relabel.os.rename", rename),
            pytest.raises(KeyboardInterrupt if interrupt else UserError),
        ):
            apply_moves(root, moves, undo)
        made = [m.target for m in moves[:stop]]
        if not made:
            assert not undo.exists()
            assert contents(root) == before
            return
        rows = undo.read_text().splitlines()
        assert rows == ["path,new_label", *(f"{target},dotted" for target in made)]
        apply_moves(root, read_moves(undo, root)[0])
        assert contents(root) == before
