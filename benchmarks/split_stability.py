"""Split stability for grouped units, measured: `python -m benchmarks.split_stability`.

240 tries per unit kind: a class of 6 to 12 sub-folders of 2 to 7 images
(`dataset.split.by=subdir`), or the same images loose in the class folder in duplicate
groups of 1 to 5 (`group_duplicates`). One image is added whose name sorts before every
other: into one sub-folder, or to one group as a new copy. Counts the tries in which an
image moved between train and test, and for groups how many of those had the new copy take
the group's lowest key (the one change that re-ranks a group, src/data/split.py).
README.md ("The split") quotes the result. The code before issue 24, which ranked a unit by
its first file's path: 66 of 240 for sub-folders (up to 13 images), 70 of 240 for groups.
"""

import random
from pathlib import Path

from src.data.folders import ImageFile
from src.data.split import split_files, stable_key

TRIES = 240


def image(relpath: str) -> ImageFile:
    return ImageFile(Path("/data") / relpath, relpath, relpath.split("/")[0], 1, 0)


def one_try(kind: str, seed: int) -> tuple[int, bool]:
    """(images moved between train and test, whether the new copy took the lowest key)."""
    rng = random.Random(seed)
    paths = []
    for s in range(rng.randint(6, 12)):
        names = {f"img_{rng.randrange(10**6):06d}" for _ in range(rng.randint(2, 7))}
        paths += [
            f"a/s{s}/{n}.jpg" if kind == "subdir" else f"a/s{s}_{n}.jpg" for n in sorted(names)
        ]
    groups = []
    if kind == "duplicates":
        shuffled = rng.sample(paths, len(paths))
        while shuffled:
            k = rng.randint(1, 5)
            groups, shuffled = [*groups, shuffled[:k]], shuffled[k:]
    by = "subdir" if kind == "subdir" else "filename"
    before = split_files([image(p) for p in paths], seed, by=by, together=groups or None)
    if kind == "subdir":
        new, joined = f"a/{rng.choice(sorted({p.split('/')[1] for p in paths}))}/000.jpg", []
    else:
        joined = rng.choice(groups)
        new = f"a/000_{joined[0].split('/')[1]}"
        groups = [[*g, new] if g is joined else g for g in groups]
    after = split_files([image(p) for p in [*paths, new]], seed, by=by, together=groups or None)
    moved = sum({before[p], after[p]} == {"train", "test"} for p in paths)
    takes_lowest = bool(joined) and stable_key(seed, new) < min(stable_key(seed, p) for p in joined)
    return moved, takes_lowest


def main() -> None:
    for kind in ("subdir", "duplicates"):
        results = [one_try(kind, seed) for seed in range(TRIES)]
        moved = [m for m, _ in results if m]
        line = f"{kind}: {len(moved)} of {TRIES} tries moved images between train and test"
        line += f" (at most {max(moved, default=0)})"
        if kind == "duplicates":
            took = sum(t for _, t in results)
            other = sum(1 for m, t in results if m and not t)
            line += f"; the new copy took its group's lowest key in {took}, {other} moved otherwise"
        print(line)


if __name__ == "__main__":
    main()
