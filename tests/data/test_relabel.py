"""Relabelling from a CSV of `path,new_label`: checked in full before anything moves."""

import subprocess
import sys

import pytest

from src.data.relabel import apply_moves, read_moves, write_undo
from src.errors import UserError
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
    apply_moves(root, moves)
    assert (root / "striped" / "shop" / "a.jpg").exists()
    assert not (root / "dotted" / "dotted_001.jpg").exists()
    undo = write_undo(moves_file, moves)
    assert undo.name == "relabel.undo.csv" and write_undo(moves_file, moves).name == (
        "relabel.undo-2.csv"
    )
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
            [sys.executable, "-m", "src.data.relabel", f"moves={moves}", f"root={root}", *args],
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
    undo = f"to undo: python -m src.data.relabel moves={tmp_path}/relabel.undo.csv"
    assert undo in applied.stdout
    again = relabel("apply=true")
    assert again.returncode == 1 and again.stderr.count("\n") == 1
    assert "no image 'dotted/dotted_002.jpg'" in again.stderr
