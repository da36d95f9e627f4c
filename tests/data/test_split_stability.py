"""Split stability for every kind of unit, under files added and removed (Hypothesis).

The guarantee (src/data/split.py, README "The split"): a unit keeps its key while it exists
(a file: its path; a sub-folder: its own path; a duplicate group: its lowest-keyed member,
so a group "still exists" while that member stays in it), so the units keep one order and
only the two cuts move. Hence, whatever changes:
- no unit overtakes another: if unit X was on an earlier side than unit Y (test, then
  validation, then train), X is not on a later side than Y afterwards;
and for one image added or removed:
- at most one unit crosses each boundary, to the neighbouring side, never test <-> train.
Every class keeps a unit on each side.
"""

from itertools import combinations
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from src.data.folders import ImageFile
from src.data.split import split_files, stable_key

KINDS = ("filename", "subdir", "duplicates")
RANK = {"test": 0, "val": 1, "train": 2}
LABELS = ("a", "b")
RATIOS = st.sampled_from([(0.75, 0.2), (0.5, 0.5), (0.9, 0.1)])  # (train_ratio, val_ratio)
STEMS = st.text("abz_", min_size=1, max_size=4)
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.filter_too_much]
)


@st.composite
def datasets(draw, kind: str) -> dict[str, list[str]]:
    """unit name -> its relpaths: one file each (filename), the files of a sub-folder, or
    of a duplicate group (named by its first member here; the test keys it as the split does)."""
    units = {}
    for label in LABELS:
        stems = draw(st.lists(STEMS, min_size=4, max_size=24, unique=True))
        if kind == "filename":
            units |= {f"{label}/{s}.jpg": [f"{label}/{s}.jpg"] for s in stems}
            continue
        count = draw(st.integers(3, max(3, len(stems) // 2)))
        owners = st.integers(-1 if kind == "subdir" else 0, count - 1)  # -1: a loose file
        owner = draw(st.lists(owners, min_size=len(stems), max_size=len(stems)))
        for stem, k in zip(stems, owner, strict=True):
            if kind == "duplicates":
                name, path = f"{label}/group{k}", f"{label}/{stem}.jpg"
            elif k < 0:
                name = path = f"{label}/{stem}.jpg"
            else:
                name, path = f"{label}/s{k}/", f"{label}/s{k}/{stem}.jpg"
            units.setdefault(name, []).append(path)
    return units


@st.composite
def changes(draw, units: dict[str, list[str]], kind: str, single: bool):
    """The units after images are added and removed (one image when `single`)."""
    after = {name: list(paths) for name, paths in units.items()}
    for _ in range(1 if single else draw(st.integers(1, 6))):
        label = draw(st.sampled_from(LABELS))
        mine = sorted(name for name in after if name.startswith(f"{label}/"))
        if not mine:
            continue  # every unit of the class removed (the test assumes this away)
        if draw(st.booleans()):  # remove one image
            name = draw(st.sampled_from(mine))
            after[name].remove(draw(st.sampled_from(after[name])))
            if not after[name]:
                del after[name]
            continue
        stem = "0" + draw(STEMS)  # sorts before every other name: the case
        joins = kind != "filename" and draw(st.booleans())
        name = draw(st.sampled_from(mine)) if joins else f"{label}/{stem}.jpg"
        if kind == "subdir" and name.endswith("/"):
            path = f"{name}{stem}.jpg"  # into a sub-folder
        elif kind == "subdir" and not joins and draw(st.booleans()):
            name = f"{label}/{stem}/"  # a new sub-folder
            path = f"{name}{stem}.jpg"
        elif kind == "subdir" and joins:
            continue  # a loose file is a unit of one: nothing joins it
        else:
            path = f"{label}/{stem}.jpg"
        known = {p for paths in after.values() for p in paths}
        if path not in known:
            after.setdefault(name, []).append(path)
    return after


def split_of(units: dict[str, list[str]], kind: str, seed: int, ratios) -> dict[str, str]:
    files = [
        ImageFile(Path("/data") / path, path, path.split("/")[0], 1, 0)
        for paths in units.values()
        for path in paths
    ]
    return split_files(
        files,
        seed,
        train_ratio=ratios[0],
        val_ratio=ratios[1],
        by="subdir" if kind == "subdir" else "filename",
        together=list(units.values()) if kind == "duplicates" else None,
    )


def identity(units: dict[str, list[str]], kind: str, seed: int) -> dict[str, str]:
    """Each unit's identity as the guarantee states it, mapped to the unit's name here: a
    group's is its lowest-keyed member (the split's stable_key)."""
    if kind != "duplicates":
        return {name: name for name in units}
    return {min(paths, key=lambda p: stable_key(seed, p)): name for name, paths in units.items()}


def re_keyed(before, after, kind, seed) -> set[str]:
    """The groups still there whose identity changed: a member of lower key joined, or
    their lowest-keyed member left. They are new units as far as the guarantee goes."""
    old, new = identity(before, kind, seed), identity(after, kind, seed)
    return set(old.values()) & set(new.values()) - {old[k] for k in old.keys() & new.keys()}


def sides(units, split) -> dict[str, str]:
    """Each unit's side; a unit on two sides fails here."""
    found = {}
    for name, paths in units.items():
        (found[name],) = {split[p] for p in paths}
    return found


def surviving_sides(kind, seed, ratios, before_units, after_units):
    """(side before, side after) of each unit that is still there, with the same identity."""
    before = sides(before_units, split_of(before_units, kind, seed, ratios))
    after = sides(after_units, split_of(after_units, kind, seed, ratios))
    old, new = identity(before_units, kind, seed), identity(after_units, kind, seed)
    kept = sorted(old.keys() & new.keys())
    for label in LABELS:  # every class keeps a unit on each side
        assert {s for name, s in after.items() if name.startswith(f"{label}/")} == set(RANK)
    return {key: (before[old[key]], after[new[key]]) for key in kept}


def enough_units(units) -> bool:
    return all(sum(name.startswith(f"{label}/") for name in units) >= 3 for label in LABELS)


@SETTINGS
@given(data=st.data(), kind=st.sampled_from(KINDS), seed=st.integers(0, 3), ratios=RATIOS)
def test_no_unit_overtakes_another_whatever_is_added_or_removed(data, kind, seed, ratios):
    units = data.draw(datasets(kind))
    assume(enough_units(units))
    changed = data.draw(changes(units, kind, single=False))
    assume(enough_units(changed))
    moved = surviving_sides(kind, seed, ratios, units, changed)
    for (x, (x_before, x_after)), (y, (y_before, y_after)) in combinations(moved.items(), 2):
        if x.split("/")[0] != y.split("/")[0]:
            continue  # each class is split on its own
        if RANK[x_before] < RANK[y_before]:
            assert RANK[x_after] <= RANK[y_after], (x, y, moved[x], moved[y])
        if RANK[y_before] < RANK[x_before]:
            assert RANK[y_after] <= RANK[x_after], (y, x, moved[y], moved[x])


@SETTINGS
@given(data=st.data(), kind=st.sampled_from(KINDS), seed=st.integers(0, 3), ratios=RATIOS)
def test_one_image_more_or_less_moves_one_unit_per_boundary_never_test_to_train(
    data, kind, seed, ratios
):
    units = data.draw(datasets(kind))
    assume(enough_units(units))
    changed = data.draw(changes(units, kind, single=True))
    assume(enough_units(changed) and not re_keyed(units, changed, kind, seed))
    moved = [
        (b, a) for b, a in surviving_sides(kind, seed, ratios, units, changed).values() if b != a
    ]
    crossings = [tuple(sorted((RANK[b], RANK[a]))) for b, a in moved]
    assert (0, 2) not in crossings, moved  # test <-> train
    assert crossings.count((0, 1)) <= 1 and crossings.count((1, 2)) <= 1, moved
