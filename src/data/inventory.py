"""Checking every image once before it is split: the bad ones are set aside, with a reason.

Each file is decoded in full (at a reduced scale where the format allows), so corrupt,
truncated, zero-byte, non-image, tiny and oversized files are found here rather than in
the middle of training. The same decode gives each image's difference hash, for finding
near-duplicates at no extra cost, and the bytes read give its content digest (sha256), by
which the feature cache and `resume` know a file. Results are cached per file, keyed by
size, modification time and inode change time: a file replaced by another of the same size
with its mtime set back still has a new change time (no call sets that one back), so it is
checked, and digested, again.
"""

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from src.atomic import written_atomically
from src.data.duplicates import DHASH_SIZE, dhash
from src.data.folders import ImageFile
from src.data.images import ImageError, decode_image, image_size

CHECK_SCALE = 64  # px; decoding JPEGs down to this is enough to prove the data is whole
CACHE_VERSION = 3  # 2: with dhash; 3: imagehash's dhash, the content digest, change time


@dataclass(frozen=True)
class ImageCheck:
    error: str | None  # why the file is unusable, or None
    width: int = 0
    height: int = 0
    dhash: str = ""  # hex difference hash (duplicates.dhash), "" for unusable files
    digest: str = ""  # sha256 of the file's bytes (content_digest), "" if unreadable


def check_images(
    files: list[ImageFile], cache_dir: Path | None, num_threads: int, hash_size: int = DHASH_SIZE
) -> dict[str, ImageCheck]:
    """Check every file (in threads: OpenCV releases the GIL); returns relpath → ImageCheck."""
    cache_path = _cache_path(cache_dir, files) if cache_dir else None
    cached = _load_cache(cache_path, hash_size)
    results, todo = {}, []
    for f in files:
        entry = cached.get(f.relpath)
        stamp = (f.size, f.mtime_ns, f.changed_ns)
        if entry and (entry["size"], entry["mtime_ns"], entry["changed_ns"]) == stamp:
            results[f.relpath] = ImageCheck(
                entry["error"], entry["width"], entry["height"], entry["dhash"], entry["digest"]
            )
        else:
            todo.append(f)
    if todo:
        with ThreadPoolExecutor(max(1, num_threads)) as pool:
            checks = pool.map(lambda p: check_image(p, hash_size), [f.path for f in todo])
            for f, check in tqdm(
                zip(todo, checks, strict=True),
                total=len(todo),
                desc="checking images",
                unit="img",
                leave=False,
                disable=len(todo) < 200,
            ):
                results[f.relpath] = check
        if cache_path:
            _save_cache(cache_path, files, results, hash_size)
    return results


def check_image(path: Path, hash_size: int = DHASH_SIZE) -> ImageCheck:
    try:
        data = path.read_bytes()
    except OSError as error:
        return ImageCheck(f"unreadable ({error.strerror or error})")
    digest = bytes_digest(data)
    try:
        width, height = image_size(data)
        pixels = decode_image(data, at_least=CHECK_SCALE)
    except ImageError as error:
        return ImageCheck(str(error), digest=digest)
    return ImageCheck(None, width, height, dhash(pixels, hash_size), digest)


def content_digest(path: Path) -> str:
    """A file's content digest, as the image check records it (sha256 of its bytes, hex).
    Within a run, prefer `ImageFile.digest` (or `ImageCheck.digest`): already computed."""
    return bytes_digest(Path(path).read_bytes())


def bytes_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _cache_path(cache_dir: Path, files: list[ImageFile]) -> Path:
    # One cache file per dataset folder: files share the root that precedes their relpath.
    first = files[0]
    root = str(first.path)[: -len(first.relpath)]
    return Path(cache_dir) / f"checks-{hashlib.sha256(root.encode()).hexdigest()[:16]}.json"


def _load_cache(path: Path | None, hash_size: int) -> dict:
    if path is None or not path.exists():
        return {}
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    current = content.get("version") == CACHE_VERSION and content.get("hash_size") == hash_size
    return content.get("files", {}) if current else {}


def _save_cache(
    path: Path, files: list[ImageFile], results: dict[str, ImageCheck], hash_size: int
) -> None:
    entries = {
        f.relpath: {
            "size": f.size,
            "mtime_ns": f.mtime_ns,
            "changed_ns": f.changed_ns,
            "error": results[f.relpath].error,
            "width": results[f.relpath].width,
            "height": results[f.relpath].height,
            "dhash": results[f.relpath].dhash,
            "digest": results[f.relpath].digest,
        }
        for f in files
    }
    with written_atomically(path) as tmp:
        tmp.write_text(
            json.dumps({"version": CACHE_VERSION, "hash_size": hash_size, "files": entries})
        )
