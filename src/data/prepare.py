"""From a folder to a split dataset: find → check → subsample → split.

This is the data's whole path before any model sees it. Unusable files are set aside here
with a reason (and reported), so every later step works on images known to decode.
Near-duplicates (by the hashes the check computed) that end up on two sides of the split
are found here too: leakage that flatters the test score.
"""

import logging
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from src.data.duplicates import DUPLICATE_THRESHOLD, duplicate_groups, straddling
from src.data.folders import ImageFile, check_classes, find_images, fingerprint
from src.data.inventory import ImageCheck, check_images
from src.data.split import SPLITS, limit_per_class, read_test_list, split_files
from src.errors import UserError

log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    root: Path
    classes: list[str]
    files: list[ImageFile]  # usable images, sorted by relpath
    split: dict[str, str]  # relpath → "train" | "val" | "test"
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relpath, reason)
    fingerprint: str = ""
    checks: dict[str, ImageCheck] = field(default_factory=dict)  # relpath → size, dhash
    duplicates: list[list[str]] = field(default_factory=list)  # groups of near-duplicate relpaths

    def leaky_duplicates(self) -> list[list[str]]:
        """The duplicate groups split over more than one of train, val and test."""
        return straddling(self.duplicates, self.split)

    def subset(self, *splits: str) -> list[ImageFile]:
        return [f for f in self.files if self.split[f.relpath] in splits]

    def labels(self, files: list[ImageFile]) -> np.ndarray:
        index = {name: k for k, name in enumerate(self.classes)}
        return np.array([index[f.label] for f in files], dtype=np.int64)

    def absent_classes(self) -> dict[str, list[str]]:
        """Per split, the classes without a single image there (a test list can do that)."""
        present = {(f.label, self.split[f.relpath]) for f in self.files}
        return {s: [c for c in self.classes if (c, s) not in present] for s in SPLITS}

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for v in self.split.values() if v == s) for s in SPLITS}


@dataclass(frozen=True)
class SplitSettings:
    """How files are divided (dataset.split in the config; conf/dataset/*.yaml say what each
    value means)."""

    train_ratio: float = 0.75
    val_ratio: float = 0.2
    by: str = "filename"  # filename | subdir
    test_list: str | None = None
    test_list_conflicts: str = "refuse"  # refuse | move (for val_list's files too)
    val_list: str | None = None  # the validation images; val_ratio is then unused
    group_duplicates: bool = False
    duplicate_threshold: int = DUPLICATE_THRESHOLD


def prepare_dataset(
    root: str | Path,
    split: SplitSettings,
    seed: int,
    max_images_per_class: int | None,
    cache_dir: Path | None,
    num_threads: int,
) -> PreparedData:
    """`split.group_duplicates`: keep each group of near-duplicates (hashes at most
    `split.duplicate_threshold` bits apart) on one side of the split.
    `split.test_list_conflicts`: what happens to a file that shares a sub-folder
    (by="subdir") or a duplicate group with a listed test (or validation) image but is not
    listed: "move" (to that side) or "refuse"."""
    root = Path(root).expanduser().resolve()
    classes, files = find_images(root)
    checks = check_images(files, cache_dir, num_threads)
    skipped = [(f.relpath, checks[f.relpath].error) for f in files if checks[f.relpath].error]
    for relpath, reason in skipped:
        log.warning(f"skipped {relpath}: {reason}")
    # each usable file carries its content digest from here on (feature cache, fingerprint)
    usable = [
        replace(f, digest=checks[f.relpath].digest) for f in files if not checks[f.relpath].error
    ]
    check_classes(classes, {f.label for f in usable}, root)
    known = {f.relpath for f in usable}
    test_files = read_test_list(split.test_list, known) if split.test_list else None
    val_files = (
        read_test_list(split.val_list, known, "dataset.split.val_list") if split.val_list else None
    )
    usable = limit_per_class(usable, max_images_per_class, seed)
    threshold = split.duplicate_threshold
    if threshold < 0:
        raise UserError(f"dataset.split.duplicate_threshold must be 0 or more, got {threshold}")
    hashes = {f.relpath: checks[f.relpath].dhash for f in usable}
    duplicates = duplicate_groups(hashes, threshold)
    assignment = split_files(
        usable,
        seed,
        train_ratio=split.train_ratio,
        val_ratio=split.val_ratio,
        by=split.by,
        test_list=test_files,
        together=duplicates if split.group_duplicates else None,
        test_list_conflicts=split.test_list_conflicts,
        val_list=val_files,
    )
    data = PreparedData(
        root, classes, usable, assignment, skipped, fingerprint(usable), checks, duplicates
    )
    if leaks := data.leaky_duplicates():
        log.warning(leakage_warning(leaks, assignment, split.group_duplicates, threshold, root))
    return data


def leakage_warning(
    leaks: list[list[str]],
    split: dict[str, str],
    group_duplicates: bool,
    threshold: int,
    root: Path,
) -> str:
    """What to say about duplicate groups that straddle the split, given the settings in
    force: grouping is advised only where it is off and would help (copies in one class
    on two sides); copies filed under several classes are a labelling question."""
    by_class = [defaultdict(set) for _ in leaks]
    for sides, group in zip(by_class, leaks, strict=True):
        for relpath in group:
            sides[relpath.split("/", 1)[0]].add(split.get(relpath))
    within = sum(1 for sides in by_class if any(len(s) > 1 for s in sides.values()))
    across = sum(1 for sides in by_class if len(sides) > 1)
    advice = []
    if within and not group_duplicates:
        advice.append("dataset.split.group_duplicates=true keeps each group on one side")
    if across:
        advice.append(
            f"{across} of them are filed under two or more classes, which no split keeps "
            "together: check their labels"
        )
    advice.append(f"python -m src.dedup root={root} threshold={threshold} sets copies aside")
    return (
        f"{len(leaks)} group(s) of duplicate images straddle train/val/test (leakage; hashes "
        f"within {threshold} bits, e.g. {' = '.join(leaks[0][:3])}); " + "; ".join(advice)
    )
