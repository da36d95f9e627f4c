"""Splitting a dataset into train, validation and test, per class (stratified).

The split is a pure function of the file list, the options and the seed. It divides units,
which go to one side whole: single files (`by="filename"`), or the sub-folders of a class
folder (`by="subdir"`, files directly in the class folder staying units of their own), which
keeps e.g. several photos of one object from straddling train and test; `together` merges
the units that hold files of one group (near-duplicates found by their hashes). The
validation part is carved from the training part; model selection only ever sees it.
Listed files (`test_list`, `val_list`) take their side whole, whatever the ranking: a
validation list is for validation images that must come from elsewhere than a draw of the
training pool (on sets of crops, random validation crops overlap training ones).

Stable: each unit has a key, a hash of the seed and a name that adding or removing other
files cannot change: a file's path, a sub-folder's own path (`class/sub-folder/`, whatever
it holds), and for a merged group the name of its part (file or sub-folder) with the lowest
key. A group is the one kind whose name follows its members: it changes only when the group
gains a part of lower key, loses its lowest-keyed part or merges with another group (and
then takes the lower key of the two).

Within its class the units are ranked by key and the sides are two cuts in that ranking:
test takes units from the front until it holds its share of the class's images, validation
the next ones until the two hold theirs, train the rest. The cuts are counted in images
from the front of the one ranking, and each target depends on the class's image count
alone. So whatever is added or removed, the units whose key is unchanged keep their order
and none overtakes another: only the cuts move. One image added or removed (one that
changes no group's key) moves each cut by at most one unit: at most one other unit crosses
each boundary, to the neighbouring side, never between test and train. The shares stay the
configured ones to within one unit. tests/data/test_split_stability.py tries to break all
this; before, a seeded shuffle reshuffled everything, and later a sub-folder or group
ranked by its first file's path was re-ranked by any file added that sorted first.
"""

import csv
import hashlib
import io
import logging
from collections import defaultdict
from collections.abc import Collection
from pathlib import Path

from src.data.duplicates import components
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
    val_list: set[str] | None = None,
) -> dict[str, str]:
    """Assign each file (by relpath) to "train", "val" or "test". Files of one `together`
    group (relpaths) go to one side, as far as they share a class (the split is per class).
    A `test_list` keeps sub-folders (by="subdir") and `together` groups whole too: a file
    that shares one with a listed file but is not listed is moved to test with it
    (`test_list_conflicts="move"`) or refused, naming it ("refuse"). A `val_list` is the
    validation set in the same way (val_ratio unused), every class needing one listed image
    at least; without a test list, test is then drawn from the rest at 1 - train_ratio."""
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
    if test_list is not None and val_list is not None:
        one_side_only(test_list, val_list)
    if test_list is not None:
        test_list = whole_test_list(files, test_list, by, together, test_list_conflicts)
    if val_list is not None:
        val_list = whole_test_list(files, val_list, by, together, test_list_conflicts, "val")
        if test_list is not None:  # a listed file's sub-folder or group went with the other list
            one_side_only(test_list, val_list, "goes to test and val with its sub-folder or group")
    assignment = {}
    for label, members in _by_label(files).items():
        test = _listed(members, test_list)  # None without a list; may be none for a class
        val = _listed(members, val_list)
        if val == []:
            raise UserError(
                f"dataset.split.val_list has no image of class {label!r}; validation needs "
                "one at least of each class (model selection scores every class)"
            )
        taken = {f.relpath for f in (test or []) + (val or [])}
        rest = _units([f for f in members if f.relpath not in taken], by, together, seed)
        if test is not None and val is not None:
            _need(label, members, rest, ("train",), "outside the test and validation lists", by)
            sides = {"train": rest, "val": [val], "test": [test]}
        elif test is not None:
            _need(label, members, rest, ("train", "validation"), "outside the test list", by)
            val, train = _cut(rest, [max(1, round(_images(rest) * val_ratio))])
            sides = {"train": train, "val": val, "test": [test]}
        elif val is not None:  # test drawn from the unlisted files at 1 - train_ratio
            _need(label, members, rest, ("train", "test"), "outside the validation list", by)
            test, train = _cut(rest, [max(1, round(_images(rest) * (1 - train_ratio)))])
            sides = {"train": train, "val": [val], "test": test}
        else:
            _need(label, members, rest, ("train", "validation", "test"), "", by)
            test, val, train = _cut(rest, _targets(len(members), train_ratio, val_ratio))
            sides = {"train": train, "val": val, "test": test}
        for split, chosen in sides.items():
            assignment.update((f.relpath, split) for unit in chosen for f in unit)
    return assignment


def _listed(members: list[ImageFile], listed: set[str] | None) -> list[ImageFile] | None:
    return None if listed is None else [f for f in members if f.relpath in listed]


def one_side_only(
    test_list: set[str],
    val_list: set[str],
    what: str = "is in both dataset.split.test_list and val_list",
) -> None:
    """A file on both lists is refused, naming the first (in path order)."""
    if both := sorted(test_list & val_list):
        more = f" (and {len(both) - 1} more)" if len(both) > 1 else ""
        raise UserError(f"{both[0]}{more} {what}; an image can be on one side only")


def whole_test_list(
    files: list[ImageFile],
    listed: set[str],
    by: str,
    together: list[list[str]] | None,
    conflicts: str = "refuse",
    side: str = "test",
) -> set[str]:
    """The test list (or with side="val" the validation list) with what must go with each
    listed file: the rest of its sub-folder (by="subdir") and of its `together` group, in
    any class. With conflicts="refuse" an unlisted such file is one UserError naming it and
    the listed file it goes with. Both lists follow dataset.split.test_list_conflicts."""
    key = f"dataset.split.{side}_list"
    known = sorted(f.relpath for f in files)
    index = {r: k for k, r in enumerate(known)}
    units = defaultdict(list)
    for r in known:
        units[_unit_name(r, by)].append(r)
    pairs = []
    for group in [*units.values(), *(together or [])]:
        members = [index[r] for r in group if r in index]
        pairs += [(members[0], other) for other in members[1:]]  # none for an empty group
    component = components(len(known), pairs)

    def root(r: str) -> int:
        return component[index[r]]

    listed_root = defaultdict(list)
    for r in sorted(listed & set(known)):
        listed_root[root(r)].append(r)
    extra = [r for r in known if r not in listed and root(r) in listed_root]
    if extra and conflicts == "refuse":
        named = [f"{r} (with {listed_root[root(r)][0]})" for r in extra[:3]]
        more = f" and {len(extra) - 3} more" if len(extra) > 3 else ""
        kinds = [
            k for k, on in (("sub-folder", by == "subdir"), ("duplicate group", together)) if on
        ]
        raise UserError(
            f"{key} leaves {len(extra)} file(s) out of a "
            f"{' or '.join(kinds)} it puts in {side}: {', '.join(named)}{more}; list them too, "
            f"or set dataset.split.test_list_conflicts=move to move them to {side}"
        )
    if extra:
        log.warning(
            f"{key}: {len(extra)} file(s) moved to {side} with the listed "
            f"image they share a sub-folder or duplicate group with, e.g. {extra[0]} "
            f"(with {listed_root[root(extra[0])][0]})"
        )
    return listed | set(extra)


def read_test_list(
    path: str | Path, known: Collection[str], key: str = "dataset.split.test_list"
) -> set[str]:
    """The relpaths (among `known`) a TSV of `class<TAB>relative/path` names as test images
    (path relative to the class folder, or to the dataset root). Every entry must name a
    file of the dataset. `key`: the setting the list came from (val_list reads the same)."""
    chosen = set()
    for number, label, relpath in parse_test_list(path, key):
        candidates = [f"{label}/{relpath}", relpath]
        match = next((c for c in candidates if c in known), None)
        if match is None:
            raise UserError(f"{path}, line {number}: no image {label}/{relpath} in the dataset")
        chosen.add(match)
    return chosen


def parse_test_list(
    path: str | Path, key: str = "dataset.split.test_list"
) -> list[tuple[int, str, str]]:
    """A test list's entries, (line number, class, path), comments and blank lines left out;
    a missing file, text that is not UTF-8 or a line that is not two fields is a UserError."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"{key}: {path} does not exist")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark, as some editors write, is dropped
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise UserError(
            f"{key}={path}: line {line} is not UTF-8 text (byte "
            f"0x{data[error.start]:02x}); expected a UTF-8 TSV of class<TAB>path lines"
        ) from None
    entries = []
    for number, row in enumerate(csv.reader(io.StringIO(text, newline=""), delimiter="\t"), 1):
        if not row or row[0].startswith("#"):
            continue
        if len(row) != 2:
            raise UserError(f"{path}, line {number}: expected 'class<TAB>path', got {row}")
        entries.append((number, row[0].strip(), row[1].strip().replace("\\", "/")))
    return entries


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


def _units(
    members: list[ImageFile], by: str, together: list[list[str]] | None, seed: int
) -> list[list[ImageFile]]:
    """A class's units, ranked by key: single files, or sub-folders of the class folder
    (by="subdir"), named by their paths; units holding files of one `together` group are
    merged, the merged unit named (and ranked) by its lowest-keyed part."""
    named = defaultdict(list)
    for f in members:
        named[_unit_name(f.relpath, by)].append(f)
    names = sorted(named, key=lambda name: stable_key(seed, name))
    if not together:
        return [named[name] for name in names]
    unit_of = {f.relpath: k for k, name in enumerate(names) for f in named[name]}
    pairs = []
    for group in together:
        parts = [unit_of[r] for r in group if r in unit_of]  # this class's part of it
        pairs += [(parts[0], other) for other in parts[1:]]
    merged = defaultdict(list)  # filled in rank order: the lowest-keyed part comes first
    for name, component in zip(names, components(len(names), pairs), strict=True):
        merged[component] += named[name]
    return list(merged.values())


def _unit_name(relpath: str, by: str) -> str:
    """The name of the unit a file belongs to: its path, or with by="subdir" that of its
    sub-folder in the class folder, `class/sub-folder/` (the slash: no file's path)."""
    parts = relpath.split("/")  # <class>/<subdir>/.../<file>, or <class>/<file>
    return f"{parts[0]}/{parts[1]}/" if by == "subdir" and len(parts) > 2 else relpath


def stable_key(seed: int, name: str) -> str:
    """A unit's place in its class's ranking: the same for a seed whatever else is there."""
    return hashlib.sha256(f"{seed}\0{name}".encode()).hexdigest()


def _targets(total: int, train_ratio: float, val_ratio: float) -> list[int]:
    """Where the cuts fall, in images counted from the front of a class's ranking: test's
    share, then that plus validation's share of the rest. They depend on `total` alone and
    rise by at most one per image, so one image more or less moves each cut one unit at most."""
    test = max(1, round(total * (1 - train_ratio)))
    return [test, test + max(1, round((total - test) * val_ratio))]


def _cut(units: list[list[ImageFile]], targets: list[int]) -> list[list[list[ImageFile]]]:
    """The ranked units in len(targets) + 1 runs: run k ends with the unit at which the
    images counted from the front reach targets[k]. Each run gets a unit at least, and
    leaves one at least for each run after it."""
    runs = [[] for _ in range(len(targets) + 1)]
    k = count = 0
    for position, unit in enumerate(units):
        later = len(targets) - k  # the runs still to fill after this one
        while (
            k < len(targets) and runs[k] and (count >= targets[k] or len(units) - position <= later)
        ):
            k += 1
            later -= 1
        runs[k].append(unit)
        count += len(unit)
    return runs


def _images(units: list[list[ImageFile]]) -> int:
    return sum(len(unit) for unit in units)


def _need(label, members, groups, sides: tuple[str, ...], where, by) -> None:
    """A class needs one unit at least for each of `sides` (those drawn from `groups`)."""
    if len(groups) < len(sides):
        singles = all(len(g) == 1 for g in groups)
        unit = "images" if singles else "sub-folders" if by == "subdir" else "images or groups"
        first = members[0]
        folder = str(first.path)[: -len(first.relpath)] + label
        named = " and ".join([", ".join(sides[:-1]), sides[-1]] if len(sides) > 1 else sides)
        raise UserError(
            f"class {label!r} has {len(groups)} {unit}{' ' + where if where else ''} in "
            f"{folder}; the split needs at least {len(sides)} "
            f"(one {'each ' if len(sides) > 1 else ''}for {named})"
        )
