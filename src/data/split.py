"""Splitting a dataset into train, validation and test, per class (stratified).

The split is a pure function of the file list, the options and the seed. With
`by="subdir"` every sub-folder inside a class folder is one unit (all its images go to the
same side), which keeps e.g. several photos of one object from straddling train and test;
`together` does the same for given groups of files (near-duplicates found by their hashes).
The validation part is carved from the training part; model selection only ever sees it.
"""

import csv
import zlib
from collections import defaultdict
from pathlib import Path

import numpy as np

from src.data.folders import ImageFile
from src.errors import UserError

SPLITS = ("train", "val", "test")


def limit_per_class(files: list[ImageFile], limit: int | None, seed: int) -> list[ImageFile]:
    """Keep a seeded random sample of at most `limit` images per class (None keeps all)."""
    if limit is None:
        return files
    if limit < 1:
        raise UserError(f"dataset.max_images_per_class must be at least 1, got {limit}")
    kept = []
    for label, members in _by_label(files).items():
        rng = np.random.default_rng([seed, zlib.crc32(label.encode())])
        chosen = sorted(rng.permutation(len(members))[:limit])
        kept += [members[i] for i in chosen]
    return sorted(kept, key=lambda f: f.relpath)


def split_files(
    files: list[ImageFile],
    seed: int,
    train_ratio: float = 0.75,
    val_ratio: float = 0.2,
    by: str = "filename",
    test_list: set[str] | None = None,
    together: list[list[str]] | None = None,
) -> dict[str, str]:
    """Assign each file (by relpath) to "train", "val" or "test". Files of one `together`
    group (relpaths) go to one side, as far as they share a class (the split is per class)."""
    if not 0 < train_ratio < 1:
        raise UserError(f"dataset.split.train_ratio must be between 0 and 1, got {train_ratio}")
    if not 0 < val_ratio < 1:
        raise UserError(f"dataset.split.val_ratio must be between 0 and 1, got {val_ratio}")
    if by not in ("filename", "subdir"):
        raise UserError(f"dataset.split.by must be 'filename' or 'subdir', got {by!r}")
    assignment = {}
    for label, members in _by_label(files).items():
        rng = np.random.default_rng([seed, zlib.crc32(label.encode())])
        if test_list is not None:
            test = [f for f in members if f.relpath in test_list]  # may be none for a class
            rest = [f for f in members if f.relpath not in test_list]
            _need(label, members, _groups(rest, by, together), 2, "outside the test list", by)
            val, train = _take(_groups(rest, by, together), val_ratio, rng)
        else:
            groups = _groups(members, by, together)
            _need(label, members, groups, 3, "", by)
            test, trainval = _take(groups, 1 - train_ratio, rng, keep=2)
            val, train = _take(_groups(trainval, by, together), val_ratio, rng)
        for split, chosen in (("train", train), ("val", val), ("test", test)):
            assignment.update((f.relpath, split) for f in chosen)
    return assignment


def read_test_list(path: str | Path, files: list[ImageFile]) -> set[str]:
    """A TSV of `class<TAB>relative/path` naming the test images (path relative to the
    class folder, or to the dataset root). Every entry must name a file of the dataset."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"dataset.split.test_list: {path} does not exist")
    known = {f.relpath for f in files}
    chosen = set()
    with path.open(newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle, delimiter="\t"), start=1):
            if not row or row[0].startswith("#"):
                continue
            if len(row) != 2:
                raise UserError(f"{path}, line {number}: expected 'class<TAB>path', got {row}")
            label, relpath = row[0].strip(), row[1].strip().replace("\\", "/")
            candidates = [f"{label}/{relpath}", relpath]
            match = next((c for c in candidates if c in known), None)
            if match is None:
                raise UserError(f"{path}, line {number}: no image {label}/{relpath} in the dataset")
            chosen.add(match)
    return chosen


def write_split_csv(path: Path, assignment: dict[str, str], labels: dict[str, str]) -> None:
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split"])
        for relpath in sorted(assignment):
            writer.writerow([relpath, labels[relpath], assignment[relpath]])


def _by_label(files: list[ImageFile]) -> dict[str, list[ImageFile]]:
    grouped = defaultdict(list)
    for f in sorted(files, key=lambda f: f.relpath):
        grouped[f.label].append(f)
    return dict(sorted(grouped.items()))


def _groups(
    members: list[ImageFile], by: str, together: list[list[str]] | None = None
) -> list[list[ImageFile]]:
    """Units that go to one side whole: single files, or sub-folders of the class folder;
    units holding members of one `together` group are merged into one."""
    if by == "filename":
        units = [[f] for f in members]
    else:
        grouped = defaultdict(list)
        for f in members:
            parts = f.relpath.split("/")  # <class>/<subdir>/.../<file>, or <class>/<file>
            grouped[parts[1] if len(parts) > 2 else f.relpath].append(f)
        units = [grouped[key] for key in sorted(grouped)]
    return _merge(units, together) if together else units


def _merge(units: list[list[ImageFile]], together: list[list[str]]) -> list[list[ImageFile]]:
    """Merge the units that share a group; the merged unit sits where its first part was."""
    unit_of = {f.relpath: k for k, unit in enumerate(units) for f in unit}
    target = list(range(len(units)))  # each unit's representative: the first unit it joins

    def find(k: int) -> int:
        while target[k] != k:
            k = target[k]
        return k

    for group in together:
        linked = sorted({find(unit_of[r]) for r in group if r in unit_of})
        for k in linked[1:]:
            target[k] = linked[0]
    merged = defaultdict(list)
    for k, unit in enumerate(units):
        merged[find(k)] += unit
    return [merged[k] for k in sorted(merged)]


def _take(groups: list[list[ImageFile]], ratio: float, rng, keep: int = 1) -> tuple[list, list]:
    """Shuffle the groups and take whole groups until `ratio` of the images is reached
    (at least one group, and at least `keep` groups left over)."""
    order = rng.permutation(len(groups))
    total = sum(len(g) for g in groups)
    target = max(1, round(total * ratio))
    taken, rest, count = [], [], 0
    for position, index in enumerate(order):
        left_after = len(order) - position - 1
        if (count < target or not taken) and left_after >= keep:
            taken += groups[index]
            count += len(groups[index])
        else:
            rest += groups[index]
    return taken, rest


def _need(label, members, groups, minimum, where, by) -> None:
    if len(groups) < minimum:
        singles = all(len(g) == 1 for g in groups)
        unit = "images" if singles else "sub-folders" if by == "subdir" else "images or groups"
        first = members[0]
        folder = str(first.path)[: -len(first.relpath)] + label
        raise UserError(
            f"class {label!r} has {len(groups)} {unit}{' ' + where if where else ''} in "
            f"{folder}; the split needs at least {minimum} (one each for "
            f"{'train, validation and test' if minimum == 3 else 'train and validation'})"
        )
