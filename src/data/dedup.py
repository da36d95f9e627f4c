"""Setting near-duplicate images aside; the command is `python -m src.dedup root=PATH`
(src/dedup.py).

Images are hashed by the same check `src.run` does before every split (and cached), so both
see the same duplicates. In each group the image with the most pixels is kept (then the
bigger file, then the older one, then the first path). Nothing is ever deleted: `apply=true`
moves the others to `<root>-quarantine/`, under the same relative paths, and `undo=true`
moves them back.
"""

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from src.data.duplicates import duplicate_groups, hamming
from src.data.folders import find_images
from src.data.inventory import ImageCheck, check_images
from src.data.overview import GRID_COLUMNS, thumbnail_rows
from src.data.quarantine import LOG_FILE, LOG_HEADER, quarantine_folder
from src.errors import UserError, exit_with_error

SHEET_FILE = "duplicates.png"  # in the dataset folder (beside the class folders, never read)
SHEET_GROUPS = 60  # groups pictured; the report lists them all


@dataclass(frozen=True)
class DuplicateGroup:
    keep: str  # relpath
    drop: list[tuple[str, int]]  # (relpath, Hamming distance to the kept image)


def find_duplicates(
    root: Path, threshold: int, hash_size: int, cache_dir: Path | None, threads: int
) -> tuple[list[DuplicateGroup], dict[str, ImageCheck]]:
    """The groups of duplicates in a dataset folder, and every file's check (unusable files
    are never anyone's duplicate)."""
    if not 2 <= hash_size <= 64:
        raise UserError(f"hash_size must be 2 to 64, got {hash_size}")
    if threshold < 0 or threshold > hash_size * hash_size:
        raise UserError(f"threshold must be 0 to {hash_size * hash_size} bits, got {threshold}")
    _, files = find_images(root)
    checks = check_images(files, cache_dir, threads, hash_size)
    by_path = {f.relpath: f for f in files}

    def bigger_first(relpath: str) -> tuple:
        check, f = checks[relpath], by_path[relpath]
        return (-check.width * check.height, -f.size, f.mtime_ns, relpath)

    groups = []
    for members in duplicate_groups({r: c.dhash for r, c in checks.items()}, threshold):
        keep, *drop = sorted(members, key=bigger_first)
        distance = [(r, hamming(checks[r].dhash, checks[keep].dhash)) for r in drop]
        groups.append(DuplicateGroup(keep, sorted(distance)))
    return groups, checks


def quarantine(root: Path, groups: list[DuplicateGroup]) -> list[str]:
    """Move every group's dropped files to the quarantine folder (same relative paths);
    refuses before moving anything if one of them is already there."""
    root, folder = Path(root).resolve(), quarantine_folder(root)
    moves = [(relpath, g.keep, distance) for g in groups for relpath, distance in g.drop]
    taken = [relpath for relpath, _, _ in moves if (folder / relpath).exists()]
    if taken:
        raise UserError(
            f"{folder / taken[0]} already exists (from an earlier dedup?); nothing was moved. "
            f"Run with undo=true first, or move it away"
        )
    folder.mkdir(exist_ok=True)
    log = folder / LOG_FILE
    new_log = not log.exists()
    with log.open("a", encoding="utf-8") as handle:
        if new_log:
            handle.write(LOG_HEADER)
        for relpath, kept, distance in moves:
            (folder / relpath).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(root / relpath, folder / relpath)
            handle.write(f"{relpath}\t{kept}\t{distance}\n")
            handle.flush()  # the log matches the disk even if interrupted
    return [relpath for relpath, _, _ in moves]


def restore(root: Path) -> tuple[list[str], list[str]]:
    """Move the quarantined files back; returns (restored, left in quarantine because a file
    of that name is back in the dataset). Removes the quarantine folder once it is empty."""
    root, folder = Path(root).resolve(), quarantine_folder(root)
    if not folder.is_dir():
        raise UserError(f"no quarantine folder {folder}: nothing to undo")
    restored, blocked = [], []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.parent != folder):
        relpath = path.relative_to(folder).as_posix()
        target = root / relpath
        if target.exists():
            blocked.append(relpath)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, target)
        restored.append(relpath)
    for directory, _, _ in sorted(os.walk(folder), key=lambda w: -len(w[0])):
        if Path(directory) != folder and not os.listdir(directory):
            os.rmdir(directory)
    if not blocked:
        (folder / LOG_FILE).unlink(missing_ok=True)
        if not os.listdir(folder):
            folder.rmdir()
    return restored, blocked


def report(
    root: Path,
    groups: list[DuplicateGroup],
    checks: dict[str, ImageCheck],
    threshold: int,
    hash_size: int,
) -> str:
    dropped = sum(len(g.drop) for g in groups)
    unusable = sum(1 for c in checks.values() if c.error)
    lines = [
        f"{root}: {len(checks)} files, {len(groups)} group(s) of duplicates "
        f"(dhash {hash_size * hash_size} bits, threshold {threshold}), {dropped} to set aside"
        + (f"; {unusable} unusable file(s) not compared" if unusable else "")
    ]
    for number, group in enumerate(groups, start=1):
        labels = sorted({r.split("/", 1)[0] for r in [group.keep, *(r for r, _ in group.drop)]})
        mixed = f"  (in {len(labels)} classes: {', '.join(labels)}; check the label)"
        lines.append(f"group {number}:{mixed if len(labels) > 1 else ''}")
        lines.append(f"  keep {group.keep}  {_size(checks[group.keep])}")
        lines += [f"  drop {r}  {_size(checks[r])}, distance {d}" for r, d in group.drop]
    return "\n".join(lines)


def duplicates_sheet(root: Path, groups: list[DuplicateGroup], path: Path) -> Path:
    """A picture of the groups, one row each: the kept image first, then the ones to drop."""
    rows = []
    for number, group in enumerate(groups[:SHEET_GROUPS], start=1):
        row = [(root / group.keep, f"{number}: keep\n{group.keep}")]
        row += [(root / r, f"drop ({d} bits)\n{r}") for r, d in group.drop[: GRID_COLUMNS - 1]]
        rows.append(row)
    more = f", first {SHEET_GROUPS} shown" if len(groups) > SHEET_GROUPS else ""
    title = f"{len(groups)} group(s) of duplicates in {root.name}{more}"
    return thumbnail_rows(rows, title, path)


def _size(check: ImageCheck) -> str:
    return f"{check.width}x{check.height}"


if __name__ == "__main__":  # the command moved up, beside the other entry points
    exit_with_error("this command is now python -m src.dedup (same arguments)", 2)
