"""Near-duplicate images by difference hashing (dhash), as the original workflow described it.

An image's dhash: shrink it to (hash_size + 1) x hash_size grey pixels and keep one bit per
horizontal neighbour pair (is the right one brighter?). Re-encoding, resizing and small
colour shifts leave most bits alone, so near-duplicates have hashes a few bits apart
(their Hamming distance); different images differ in about half of the bits. It is
`imagehash.dhash` itself (the library the original names), on the pixels of the project's
own decoder: its Lanczos shrink is 2 to 4 times steadier under re-encoding and resizing
than OpenCV's INTER_AREA was (see benchmarks/dedup_threshold.py).
"""

from collections import defaultdict
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image

DHASH_SIZE = 16  # the original's hash_size: 16 x 16 = 256 bits
# bits (of 256) up to which two images are duplicates. Measured by
# benchmarks/dedup_threshold.py on 17 real photos: their copies (JPEG quality 50-95, 75 % and
# 50 % downscales, both) are 4 bits from the original in the median, 14 at the 95th
# percentile, 18 at most, and all of them are grouped from 14 on; distinct photos and
# disjoint quarters of one photo are 37 bits apart or more. 16 groups every copy and keeps
# 21 bits clear of the closest distinct pair (README, "Duplicates").
DUPLICATE_THRESHOLD = 16


def dhash(image: np.ndarray, hash_size: int = DHASH_SIZE) -> str:
    """The difference hash of an RGB uint8 image, as hex (hash_size² bits)."""
    bits = imagehash.dhash(Image.fromarray(image), hash_size).hash
    return np.packbits(bits).tobytes().hex()


def hamming(a: str, b: str) -> int:
    """The number of bits in which two hex hashes differ."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def duplicate_groups(hashes: dict[str, str], threshold: int = 0) -> list[list[str]]:
    """Groups of two or more keys whose hashes are within `threshold` bits of each other,
    linked transitively (a~b and b~c make one group); each group sorted, groups by first key.
    Keys without a hash (empty string) are never duplicates."""
    keys = sorted(k for k, h in hashes.items() if h)
    if threshold < 0:
        raise ValueError(f"threshold must be 0 or more, got {threshold}")
    if threshold == 0:
        same = defaultdict(list)
        for key in keys:
            same[hashes[key]].append(key)
        groups = [members for members in same.values() if len(members) > 1]
    else:
        groups = _near_groups(keys, [hashes[k] for k in keys], threshold)
    return sorted(groups, key=lambda g: g[0])


def straddling(groups: list[list[str]], side: dict[str, str]) -> list[list[str]]:
    """The groups whose members are not all on one side (of a train/val/test split)."""
    return [g for g in groups if len({side[k] for k in g if k in side}) > 1]


def write_groups_tsv(
    path: Path, groups: list[list[str]], labels: dict[str, str], split: dict[str, str]
) -> None:
    """One row per file: group number (from 1), path, label, split."""
    rows = [
        f"{k}\t{relpath}\t{labels[relpath]}\t{split.get(relpath, '')}\n"
        for k, group in enumerate(groups, start=1)
        for relpath in group
    ]
    Path(path).write_text("group\tpath\tlabel\tsplit\n" + "".join(rows), encoding="utf-8")


def components(count: int, pairs) -> np.ndarray:
    """Which component each of `count` items is in, each pair (i, j) of `pairs` linking two
    of them, transitively (a~b and b~c make one): scipy's connected components. The split
    links sub-folders and groups with it too."""
    # imported here: scipy.sparse takes about half a second, and src.run's command-line
    # check, which runs before torch loads, imports this module
    from scipy.sparse import coo_array
    from scipy.sparse.csgraph import connected_components

    links = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    graph = coo_array((np.ones(len(links), np.int8), links.T), shape=(count, count))
    return connected_components(graph, directed=False)[1]


def _near_groups(keys: list[str], hexes: list[str], threshold: int) -> list[list[str]]:
    if not keys:
        return []
    packed = np.frombuffer(b"".join(bytes.fromhex(h) for h in hexes), np.uint8)
    ones = np.unpackbits(packed.reshape(len(keys), -1), axis=1).astype(np.int32)
    pairs = []
    for start in range(0, len(keys), 1024):  # blocks keep the distance matrix small
        block = ones[start : start + 1024]
        distance = block @ (1 - ones).T + (1 - block) @ ones.T
        i, j = np.nonzero(distance <= threshold)
        pairs.append(np.stack([start + i, j], axis=1)[start + i < j])
    members = defaultdict(list)
    for key, component in zip(keys, components(len(keys), np.concatenate(pairs)), strict=True):
        members[component].append(key)
    return [g for g in members.values() if len(g) > 1]
