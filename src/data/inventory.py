"""Checking every image once before it is split: the bad ones are set aside, with a reason.

Each file is decoded in full (at a reduced scale where the format allows), so corrupt,
truncated, zero-byte, non-image, tiny and oversized files are found here rather than in
the middle of training. Results are cached per file (keyed by size and mtime), so a rerun
on the same folder only decodes what changed.
"""

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from src.data.folders import ImageFile
from src.data.images import ImageError, decode_image, image_size

CHECK_SCALE = 64  # px; decoding JPEGs down to this is enough to prove the data is whole
CACHE_VERSION = 1


@dataclass(frozen=True)
class ImageCheck:
    error: str | None  # why the file is unusable, or None
    width: int = 0
    height: int = 0


def check_images(
    files: list[ImageFile], cache_dir: Path | None, num_threads: int
) -> dict[str, ImageCheck]:
    """Check every file (in threads: OpenCV releases the GIL); returns relpath → ImageCheck."""
    cache_path = _cache_path(cache_dir, files) if cache_dir else None
    cached = _load_cache(cache_path)
    results, todo = {}, []
    for f in files:
        entry = cached.get(f.relpath)
        if entry and entry["size"] == f.size and entry["mtime_ns"] == f.mtime_ns:
            results[f.relpath] = ImageCheck(entry["error"], entry["width"], entry["height"])
        else:
            todo.append(f)
    if todo:
        with ThreadPoolExecutor(max(1, num_threads)) as pool:
            checks = pool.map(check_image, [f.path for f in todo])
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
            _save_cache(cache_path, files, results)
    return results


def check_image(path: Path) -> ImageCheck:
    try:
        data = path.read_bytes()
        width, height = image_size(data)
        decode_image(data, at_least=CHECK_SCALE)
    except ImageError as error:
        return ImageCheck(str(error))
    except OSError as error:
        return ImageCheck(f"unreadable ({error.strerror or error})")
    return ImageCheck(None, width, height)


def _cache_path(cache_dir: Path, files: list[ImageFile]) -> Path:
    # One cache file per dataset folder: files share the root that precedes their relpath.
    first = files[0]
    root = str(first.path)[: -len(first.relpath)]
    return Path(cache_dir) / f"checks-{hashlib.sha256(root.encode()).hexdigest()[:16]}.json"


def _load_cache(path: Path | None) -> dict:
    if path is None or not path.exists():
        return {}
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return content.get("files", {}) if content.get("version") == CACHE_VERSION else {}


def _save_cache(path: Path, files: list[ImageFile], results: dict[str, ImageCheck]) -> None:
    entries = {
        f.relpath: {
            "size": f.size,
            "mtime_ns": f.mtime_ns,
            "error": results[f.relpath].error,
            "width": results[f.relpath].width,
            "height": results[f.relpath].height,
        }
        for f in files
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({"version": CACHE_VERSION, "files": entries}))
    os.replace(tmp, path)  # atomic: a crash never leaves a half-written cache
