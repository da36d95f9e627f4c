"""A dataset's quarantine folder, `<root>-quarantine/`: images set aside, never deleted.

Beside the dataset (never inside it, so no run reads it), under the same relative paths
(`<class>/.../<name>`), so each image can go back where it was. Dedup moves the copies it
finds there (`python -m src.dedup apply=true`), relabelling moves an image there when
its new label is `-`; `quarantined.tsv` lists each one: the file it was a copy of (`kept`,
empty for an image set aside by hand) and how far its hash was from it (`distance`).
"""

import csv
import os
from pathlib import Path

from src.atomic import written_atomically

LOG_FILE = "quarantined.tsv"  # in the quarantine folder: path, kept, distance
LOG_HEADER = "path\tkept\tdistance\n"
SET_ASIDE = "-"  # as a new label: into the quarantine; as a path prefix, `-/<class>/...`: in it


def quarantine_folder(root: Path) -> Path:
    root = Path(root).resolve()
    return root.with_name(f"{root.name}-quarantine")


def quarantined_files(root: Path) -> list[str]:
    """Relative paths (`<class>/.../<name>`) of the images in the quarantine folder."""
    folder = quarantine_folder(root)
    if not folder.is_dir():
        return []
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if Path(dirpath) == folder:
            continue  # the log; images always sit in a class folder
        found += [
            Path(dirpath, name).relative_to(folder).as_posix()
            for name in sorted(filenames)
            if not name.startswith(".")
        ]
    return found


def log_set_aside(root: Path, relpaths: list[str]) -> None:
    """Add images set aside by hand to the log (no kept file, no distance)."""
    log = quarantine_folder(root) / LOG_FILE
    new = not log.exists()
    with log.open("a", encoding="utf-8") as handle:
        handle.write(LOG_HEADER if new else "")
        handle.writelines(f"{relpath}\t\t\n" for relpath in relpaths)


def forget(root: Path, relpaths: list[str]) -> None:
    """After images left the quarantine: their log lines go, and so do the folders they
    leave empty (the quarantine folder too, once nothing is left in it)."""
    folder = quarantine_folder(root)
    log, gone = folder / LOG_FILE, set(relpaths)
    if log.exists():
        with log.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle, delimiter="\t"))
        kept = [row for row in rows[1:] if row and row[0] not in gone]
        if kept:
            with written_atomically(log) as tmp:
                tmp.write_text(LOG_HEADER + "".join("\t".join(r) + "\n" for r in kept), "utf-8")
        else:
            log.unlink()
    for directory, _, _ in sorted(os.walk(folder), key=lambda walk: -len(walk[0])):
        if not os.listdir(directory):
            os.rmdir(directory)
