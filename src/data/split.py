"""Splitting a dataset into train, validation and test, per class (stratified).

The split is a pure function of the file list, the options and the seed. With
`by="subdir"` every sub-folder inside a class folder is one unit (all its images go to the
same side), which keeps e.g. several photos of one object from straddling train and test;
`together` does the same for given groups of files (near-duplicates found by their hashes).
The validation part is carved from the training part; model selection only ever sees it.

Stable: each unit has a key, a hash of the seed and its relative path, and within its
class the units are ranked by key: the first ones (up to the test share of the class's
images) are test, the next ones validation, the rest train. A file's key does not depend
on any other file, so adding or removing one image shifts each rank by at most one: at
most one other file crosses each boundary, to the neighbouring side (test and validation,
or validation and train, never test and train), and the shares stay the configured ones
to within one image (one unit). A seeded shuffle, as before, reshuffled everything.
"""

import csv
import hashlib
import logging
from collections import defaultdict
from pathlib import Path

from src.data.folders import ImageFile
from src.errors import UserError

SPLITS = ("train", "val", "test")
TEST_LIST_CONFLICTS = ("refuse", "move")

log = logging.getLogger(__name__)


def limit_per_class(files: list[ImageFile], limit: int | None, seed: int) -> list[ImageFile]:
    """Keep a seeded sample of at most `limit` images per class (None keeps all): the ones
    with the lowest stable keys, so an added image displaces at most one other."""
    if limit is None:
        return files
    if limit < 1:
        raise UserError(f"dataset.max_images_per_class must be at least 1, got {limit}")
    kept = []
    for members in _by_label(files).values():
        kept += sorted(members, key=lambda f: stable_key(seed, f"sample\0{f.relpath}"))[:limit]
    return sorted(kept, key=lambda f: f.relpath)


def split_files(
    files: list[ImageFile],
    seed: int,
    *,
    train_ratio: float = 0.75,
    val_ratio: float = 0.2,
    by: str = "filename",
    test_list: set[str] | None = None,
    together: list[list[str]] | None = None,
    test_list_conflicts: str = "refuse",
) -> dict[str, str]:
    """Assign each file (by relpath) to "train", "val" or "test". Files of one `together`
    group (relpaths) go to one side, as far as they share a class (the split is per class).
    A `test_list` keeps sub-folders (by="subdir") and `together` groups whole too: a file
    that shares one with a listed file but is not listed is moved to test with it
    (`test_list_conflicts="move"`) or refused, naming it ("refuse")."""
    if not 0 < train_ratio < 1:
        raise UserError(f"dataset.split.train_ratio must be between 0 and 1, got {train_ratio}")
    if not 0 < val_ratio < 1:
        raise UserError(f"dataset.split.val_ratio must be between 0 and 1, got {val_ratio}")
    if by not in ("filename", "subdir"):
        raise UserError(f"dataset.split.by must be 'filename' or 'subdir', got {by!r}")
    if test_list_conflicts not in TEST_LIST_CONFLICTS:
        raise UserError(
            "dataset.split.test_list_conflicts must be 'refuse' or 'move', "
            f"got {test_list_conflicts!r}"
        )
    if test_list is not None:
        test_list = whole_test_list(files, test_list, by, together, test_list_conflicts)
    assignment = {}
    for label, members in _by_label(files).items():
        if test_list is not None:
            test = [f for f in members if f.relpath in test_list]  # may be none for a class
            rest = [f for f in members if f.relpath not in test_list]
            _need(label, members, _groups(rest, by, together), 2, "outside the test list", by)
            val, train = _take(_groups(rest, by, together), val_ratio, seed)
        else:
            groups = _groups(members, by, together)
            _need(label, members, groups, 3, "", by)
            test, trainval = _take(groups, 1 - train_ratio, seed, keep=2)
            val, train = _take(_groups(trainval, by, together), val_ratio, seed)
        for split, chosen in (("train", train), ("val", val), ("test", test)):
            assignment.update((f.relpath, split) for f in chosen)
    return assignment


def whole_test_list(
    files: list[ImageFile],
    listed: set[str],
    by: str,
    together: list[list[str]] | None,
    conflicts: str = "refuse",
) -> set[str]:
    """The test list with what must go with each listed file: the rest of its sub-folder
    (by="subdir") and of its `together` group, in any class. With conflicts="refuse" an
    unlisted such file is one UserError naming it and the listed file it goes with."""
    known = {f.relpath for f in files}
    parent = {r: r for r in known}

    def root(r: str) -> str:
        while parent[r] != r:
            parent[r] = parent[parent[r]]
            r = parent[r]
        return r

    def link(members: list[str]) -> None:
        for other in members[1:]:
            a, b = root(members[0]), root(other)
            if a != b:
                parent[max(a, b)] = min(a, b)

    if by == "subdir":
        folders = defaultdict(list)
        for f in files:
            parts = f.relpath.split("/")
            if len(parts) > 2:
                folders[(parts[0], parts[1])].append(f.relpath)
        for members in folders.values():
            link(sorted(members))
    for group in together or []:
        link(sorted(r for r in group if r in known))
    listed_root = defaultdict(list)
    for r in sorted(listed & known):
        listed_root[root(r)].append(r)
    extra = sorted(r for r in known - listed if root(r) in listed_root)
    if extra and conflicts == "refuse":
        named = [f"{r} (with {listed_root[root(r)][0]})" for r in extra[:3]]
        more = f" and {len(extra) - 3} more" if len(extra) > 3 else ""
        kinds = [
            k for k, on in (("sub-folder", by == "subdir"), ("duplicate group", together)) if on
        ]
        raise UserError(
            f"dataset.split.test_list leaves {len(extra)} file(s) out of a "
            f"{' or '.join(kinds)} it puts in test: {', '.join(named)}{more}; list them too, "
            "or set dataset.split.test_list_conflicts=move to move them to test"
        )
    if extra:
        log.warning(
            f"dataset.split.test_list: {len(extra)} file(s) moved to test with the listed "
            f"image they share a sub-folder or duplicate group with, e.g. {extra[0]} "
            f"(with {listed_root[root(extra[0])][0]})"
        )
    return listed | set(extra)


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


def stable_key(seed: int, relpath: str) -> str:
    """A unit's place in its class's ranking: the same for a seed whatever else is there."""
    return hashlib.sha256(f"{seed}\0{relpath}".encode()).hexdigest()


def _take(groups: list[list[ImageFile]], ratio: float, seed: int, keep: int = 1) -> tuple:
    """Rank the groups by their stable key (that of their first file) and take whole groups
    until `ratio` of the images is reached (at least one, and at least `keep` left over)."""
    order = sorted(groups, key=lambda g: stable_key(seed, min(f.relpath for f in g)))
    total = sum(len(g) for g in groups)
    target = max(1, round(total * ratio))
    taken, rest, count = [], [], 0
    for position, group in enumerate(order):
        left_after = len(order) - position - 1
        if (count < target or not taken) and left_after >= keep:
            taken += group
            count += len(group)
        else:
            rest += group
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
