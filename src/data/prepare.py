"""From a folder to a split dataset: find → check → subsample → split.

This is the data's whole path before any model sees it. Unusable files are set aside here
with a reason (and reported), so every later step works on images known to decode.
Near-duplicates (by the hashes the check computed) that end up on two sides of the split
are found here too: leakage that flatters the test score.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from src.data.duplicates import DUPLICATE_THRESHOLD, duplicate_groups, straddling
from src.data.folders import ImageFile, check_classes, find_images, fingerprint
from src.data.inventory import ImageCheck, check_images
from src.data.split import limit_per_class, read_test_list, split_files
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

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for v in self.split.values() if v == s) for s in ("train", "val", "test")}


def prepare_dataset(
    root: str | Path,
    seed: int,
    max_images_per_class: int | None,
    train_ratio: float,
    val_ratio: float,
    split_by: str,
    test_list: str | None,
    cache_dir: Path | None,
    num_threads: int,
    group_duplicates: bool = False,
    duplicate_threshold: int = DUPLICATE_THRESHOLD,
) -> PreparedData:
    """`group_duplicates`: keep each group of near-duplicates (hashes at most
    `duplicate_threshold` bits apart) on one side of the split."""
    root = Path(root).expanduser().resolve()
    classes, files = find_images(root)
    checks = check_images(files, cache_dir, num_threads)
    skipped = [(f.relpath, checks[f.relpath].error) for f in files if checks[f.relpath].error]
    for relpath, reason in skipped:
        log.warning(f"skipped {relpath}: {reason}")
    usable = [f for f in files if not checks[f.relpath].error]
    check_classes(classes, usable, root)
    test_files = read_test_list(test_list, usable) if test_list else None
    usable = limit_per_class(usable, max_images_per_class, seed)
    if duplicate_threshold < 0:
        raise UserError(
            f"dataset.split.duplicate_threshold must be 0 or more, got {duplicate_threshold}"
        )
    hashes = {f.relpath: checks[f.relpath].dhash for f in usable}
    duplicates = duplicate_groups(hashes, duplicate_threshold)
    together = duplicates if group_duplicates else None
    split = split_files(usable, seed, train_ratio, val_ratio, split_by, test_files, together)
    data = PreparedData(
        root, classes, usable, split, skipped, fingerprint(usable), checks, duplicates
    )
    if leaks := data.leaky_duplicates():
        log.warning(
            f"{len(leaks)} group(s) of duplicate images straddle train/val/test (leakage, e.g. "
            f"{' = '.join(leaks[0][:3])}); dataset.split.group_duplicates=true keeps each "
            f"group on one side, python -m src.data.dedup root={root} sets copies aside"
        )
    return data
