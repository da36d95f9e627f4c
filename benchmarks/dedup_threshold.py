"""The default near-duplicate threshold, measured: `python -m benchmarks.dedup_threshold`.

Real photos (scikit-image's sample photos and the shared t-shirt photo) are written as PNG,
then as the copies a scraped dataset holds: JPEG re-encodings at quality 50 to 95,
downscales to 75 % and 50 %, and both together. Their pairs with the original must be
grouped. Distinct photos, and the four disjoint quarters of each photo, must never share a
group. Every file goes through the project's own image check (`check_image`: the decode
and the hash that `src.run` and `src.dedup` use), so the numbers hold for them.

Prints, per threshold, the share of copy pairs grouped and the groups that mix distinct
images, and the smallest distance between distinct images; README.md quotes the result.
"""

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np

from src.data.duplicates import DHASH_SIZE, duplicate_groups, hamming
from src.data.inventory import check_image

SHARED_PHOTO = Path("/work/shared/data/testImg.jpg")  # a real striped t-shirt photo
SAMPLE_PHOTOS = [  # skimage.data photos shipped with the package (no download)
    *("astronaut", "camera", "coffee", "chelsea", "rocket", "hubble_deep_field"),
    *("immunohistochemistry", "retina", "moon", "coins", "page", "brick", "grass"),
    *("gravel", "clock", "text"),
]
QUALITIES = (50, 60, 70, 80, 90, 95)
SCALES = (0.75, 0.5)


def photos(shared: Path = SHARED_PHOTO) -> dict[str, np.ndarray]:
    """name → RGB uint8 pixels of every real photo available here."""
    import skimage.data

    found = {}
    for name in SAMPLE_PHOTOS:
        pixels = getattr(skimage.data, name)()
        found[name] = pixels if pixels.ndim == 3 else np.stack([pixels] * 3, axis=-1)
    if shared.is_file():
        found["testImg"] = cv2.cvtColor(cv2.imread(str(shared)), cv2.COLOR_BGR2RGB)
    return found


def encode(pixels: np.ndarray, quality: int | None) -> bytes:
    """PNG when quality is None, else JPEG at that quality."""
    bgr = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    if quality is None:
        return cv2.imencode(".png", bgr)[1].tobytes()
    return cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def shrink(pixels: np.ndarray, scale: float) -> np.ndarray:
    return cv2.resize(pixels, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def variants(pixels: np.ndarray) -> dict[str, bytes]:
    """The copies of one photo, by name: re-encoded, downscaled, and both."""
    copies = {f"q{q}": encode(pixels, q) for q in QUALITIES}
    for scale in SCALES:
        small = shrink(pixels, scale)
        copies[f"x{scale:g}"] = encode(small, None)
        copies.update({f"x{scale:g}_q{q}": encode(small, q) for q in (50, 70, 95)})
    return copies


def quarters(pixels: np.ndarray) -> dict[str, bytes]:
    """The four disjoint quarters of a photo: distinct images that share its look."""
    h, w = pixels.shape[0] // 2, pixels.shape[1] // 2
    parts = {"tl": pixels[:h, :w], "tr": pixels[:h, w:], "bl": pixels[h:, :w], "br": pixels[h:, w:]}
    return {name: encode(np.ascontiguousarray(part), None) for name, part in parts.items()}


def hash_files(folder: Path, files: dict[str, bytes], hash_size: int) -> dict[str, str]:
    hashes = {}
    for key, data in files.items():
        path = folder / (key.replace("/", "__") + ".img")
        path.write_bytes(data)
        check = check_image(path, hash_size)
        assert check.error is None, (key, check.error)
        hashes[key] = check.dhash
    return hashes


def measure(hash_size: int = DHASH_SIZE, thresholds=range(0, 41, 2)) -> dict:
    """Distances and, per threshold, (share of copy pairs grouped, groups mixing images)."""
    files, identity, pairs = {}, {}, []
    for name, pixels in photos().items():
        files[f"{name}/original"] = encode(pixels, None)
        identity[f"{name}/original"] = name
        for copy, data in variants(pixels).items():
            files[f"{name}/{copy}"] = data
            identity[f"{name}/{copy}"] = name
            pairs.append((f"{name}/original", f"{name}/{copy}"))
        for part, data in quarters(pixels).items():
            files[f"{name}/crop_{part}"] = data
            identity[f"{name}/crop_{part}"] = f"{name}/crop_{part}"
    with tempfile.TemporaryDirectory() as tmp:
        hashes = hash_files(Path(tmp), files, hash_size)
    copy_distance = [hamming(hashes[a], hashes[b]) for a, b in pairs]
    keys = sorted(hashes)
    distinct = [
        hamming(hashes[a], hashes[b])
        for i, a in enumerate(keys)
        for b in keys[i + 1 :]
        if identity[a] != identity[b]
    ]
    table = {}
    for threshold in thresholds:
        groups = duplicate_groups(hashes, threshold)
        group_of = {k: n for n, g in enumerate(groups) for k in g}
        grouped = sum(1 for a, b in pairs if a in group_of and group_of.get(b) == group_of[a])
        mixed = sum(1 for g in groups if len({identity[k] for k in g}) > 1)
        table[threshold] = (grouped / len(pairs), mixed)
    return {
        "photos": len({identity[k] for k in keys if k.endswith("/original")}),
        "copy_pairs": len(pairs),
        "copy_distance": copy_distance,
        "distinct_pairs": len(distinct),
        "distinct_min": min(distinct),
        "table": table,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hash-size", type=int, default=DHASH_SIZE)
    hash_size = parser.parse_args().hash_size
    result = measure(hash_size)
    copies = np.array(result["copy_distance"])
    print(
        f"{result['photos']} photos, {result['copy_pairs']} copy pairs, "
        f"{result['distinct_pairs']} pairs of distinct images (photos and disjoint quarters); "
        f"dhash {hash_size * hash_size} bits"
    )
    print(
        f"copy distance: median {np.median(copies):g}, 95th percentile "
        f"{np.percentile(copies, 95):g}, max {copies.max()}; "
        f"distinct images: min {result['distinct_min']}"
    )
    print("threshold  copies grouped  groups mixing distinct images")
    for threshold, (grouped, mixed) in result["table"].items():
        print(f"{threshold:>9}  {grouped:>14.1%}  {mixed:>29}")


if __name__ == "__main__":
    main()
