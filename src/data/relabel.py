"""Moving images between class folders from a CSV; the command is
`python -m src.relabel moves=FILE root=PATH` (src/relabel.py).

The CSV has `path,new_label` rows (a header line is optional): paths relative to the
dataset root, as the results page exports them. The new label `-` sets the image aside: it
moves to the dataset's quarantine folder (`<root>-quarantine/`, the one dedup uses, same
relative path), out of every run; in a path, `-/<class>/...` names an image in there.
Every row is checked before anything moves: an unknown path or label, a path listed twice,
or a move onto an existing file refuses the whole CSV. `apply=true` moves the files
(keeping any sub-folder below the class folder) and records each move in
`<moves>.undo.csv` before the next, so the undo file always lists exactly the moves made,
even when one fails or Ctrl-C stops them midway; it moves them back the same way, out of
the quarantine too. Nothing is ever deleted.
"""

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from src.atomic import written_atomically
from src.data.folders import find_images
from src.data.quarantine import (
    SET_ASIDE,
    forget,
    log_set_aside,
    quarantine_folder,
    quarantined_files,
)
from src.errors import UserError, exit_with_error


@dataclass(frozen=True)
class Move:
    line: int
    source: str  # relpaths; `-/<class>/...` is in the quarantine folder
    target: str


def read_moves(moves: Path, root: Path) -> tuple[list[Move], list[str]]:
    """The moves of a CSV, checked against the dataset; returns (moves, rows that change
    nothing). Raises UserError naming the first problem (and how many more there are)."""
    moves, root = Path(moves).expanduser(), Path(root).expanduser().resolve()
    if not moves.is_file():
        raise UserError(f"moves file {moves} does not exist")
    classes, files = find_images(root)
    known = {f.relpath for f in files} | {f"{SET_ASIDE}/{p}" for p in quarantined_files(root)}
    taken = set(known)
    seen: dict[str, int] = {}
    planned, unchanged, problems = [], [], []
    with moves.open(newline="", encoding="utf-8-sig") as handle:
        rows = list(enumerate(csv.reader(handle), start=1))
    if rows and [c.strip().lower() for c in rows[0][1]] == ["path", "new_label"]:
        rows = rows[1:]
    for number, row in rows:
        if not row or not "".join(row).strip():
            continue
        if len(row) != 2:
            problems.append(f"line {number}: expected 'path,new_label', got {row}")
            continue
        relpath, label = _relpath(row[0].strip(), root), row[1].strip()
        if relpath not in known:
            problems.append(f"line {number}: no image {row[0].strip()!r} in {root}")
        elif label not in classes and label != SET_ASIDE:
            problems.append(
                f"line {number}: {label!r} is not a class of {root} ({', '.join(classes)}; "
                f"or {SET_ASIDE} to set the image aside)"
            )
        elif relpath in seen:
            problems.append(f"line {number}: {relpath} is already moved on line {seen[relpath]}")
        elif relpath.split("/", 1)[0] == label:
            unchanged.append(relpath)
        else:
            target = _target(relpath, label)
            if target in taken:
                problems.append(f"line {number}: {target} already exists; nothing is overwritten")
            else:
                planned.append(Move(number, relpath, target))
                taken.add(target)
        seen.setdefault(relpath, number)
    if problems:
        more = f" ({len(problems) - 1} more problem(s) after it)" if len(problems) > 1 else ""
        raise UserError(f"{moves}, {problems[0]}{more}; nothing was moved")
    return planned, unchanged


def apply_moves(root: Path, moves: list[Move], undo: Path | None = None) -> None:
    """Make the moves in order. With `undo` (a free name: `undo_file`), each move made is
    recorded there before the next starts. A move that cannot be made stops them, as a
    UserError saying how many were made."""
    root = Path(root).expanduser().resolve()
    set_aside, brought_back, made = [], [], []
    try:
        for move in moves:
            target = location(root, move.target)
            try:
                if target.exists():  # appeared since the check: still never overwrite
                    raise UserError(f"{target} appeared meanwhile; nothing is overwritten")
                target.parent.mkdir(parents=True, exist_ok=True)
                os.rename(location(root, move.source), target)
            except (OSError, UserError) as error:
                problem = error if isinstance(error, UserError) else error.strerror or error
                raise UserError(
                    f"cannot move {move.source} to {move.target} ({problem}); stopped after "
                    f"{len(made)} of {len(moves)} move(s)"
                ) from None
            made.append(move)
            if undo is not None:  # before the next move: the undo file matches the folders
                write_undo(undo, made)
            for relpath, found in ((move.target, set_aside), (move.source, brought_back)):
                if relpath.startswith(f"{SET_ASIDE}/"):
                    found.append(relpath[len(SET_ASIDE) + 1 :])
    finally:  # also when stopped: the quarantine's log matches what is in it
        if set_aside:
            log_set_aside(root, set_aside)
        if brought_back:
            forget(root, brought_back)


def location(root: Path, relpath: str) -> Path:
    """Where a move's relpath is on disk: in the dataset, or (`-/...`) in its quarantine."""
    if relpath.startswith(f"{SET_ASIDE}/"):
        return quarantine_folder(root) / relpath[len(SET_ASIDE) + 1 :]
    return Path(root) / relpath


def undo_file(moves_file: Path) -> Path:
    """Where the undo of a moves file goes: beside it, never replacing an earlier undo."""
    moves_file = Path(moves_file).expanduser()
    path = moves_file.with_name(f"{moves_file.stem}.undo.csv")
    number = 2
    while path.exists():
        path = moves_file.with_name(f"{moves_file.stem}.undo-{number}.csv")
        number += 1
    return path


def write_undo(path: Path, made: list[Move]) -> None:
    """A CSV that moves the files of `made` back (written whole or not at all)."""
    with written_atomically(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "new_label"])
        writer.writerows([m.target, m.source.split("/", 1)[0]] for m in made)


def undo_command(undo: Path, root: Path) -> str:
    return f"python -m src.relabel moves={undo} root={root} apply=true"


def _target(relpath: str, label: str) -> str:
    """The new relpath: `-/` and the whole path to set aside, else the class folder changed
    (a quarantined image's too); any sub-folder below the class folder comes along."""
    inner = relpath.removeprefix(f"{SET_ASIDE}/")  # <class>/.../<name>
    return f"{SET_ASIDE}/{inner}" if label == SET_ASIDE else f"{label}/{inner.split('/', 1)[1]}"


def _relpath(text: str, root: Path) -> str:
    path = Path(text.replace("\\", "/"))
    if path.is_absolute():
        path = path.resolve()
        for base, prefix in ((root, ""), (quarantine_folder(root), f"{SET_ASIDE}/")):
            if path.is_relative_to(base):
                return prefix + path.relative_to(base).as_posix()
        return text  # outside the dataset and its quarantine: reported as unknown
    return path.as_posix()


if __name__ == "__main__":  # the command moved up, beside the other entry points
    exit_with_error("this command is now python -m src.relabel (same arguments)", 2)
