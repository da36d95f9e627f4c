"""Download a labelled URL list into a dataset folder (the original workflow's downloader);
the command is `python -m src.download` (src/download.py).

Every image is checked with the project's own decoder before it is kept, so HTML error pages
served with status 200, cut-off bodies and 1x1 placeholders are refused; images with a longer
side over `max_size` are downscaled. Files are written to a hidden temporary name and renamed,
so no partial file ever has a final name; names are stable, so a rerun skips what is there
and resumes an interrupted download. At the end: a summary, `download_failures.tsv` (every
line that did not become an image, with the reason) and `sources.tsv` (each file's URL).
"""

import csv
import io
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import cv2
from tqdm import tqdm

from src.atomic import written_atomically
from src.data.fetch import FetchError, HostLookup, fetch_with_retries
from src.data.images import SIGNATURES, ImageError, decode_image
from src.data.url_list import UrlEntry, file_stem, normalized_url, read_url_list
from src.errors import UserError, exit_with_error

FAILURES_FILE = "download_failures.tsv"
SOURCES_FILE = "sources.tsv"  # path<TAB>url of every downloaded file: provenance, name clashes
KEPT_FORMATS = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "BMP": ".bmp", "WEBP": ".webp"}
JPEG_QUALITY = 95  # for downscaled images (and formats kept as JPEG)


@dataclass(frozen=True)
class Failure:
    line: int
    label: str
    url: str
    reason: str  # a few words, the summary's category: "timeout", "HTTP 404", "not an image"
    detail: str = ""


@dataclass
class DownloadSummary:
    root: Path
    lines: int = 0  # entries and malformed lines of the list
    downloaded: list[str] = field(default_factory=list)  # relpaths
    present: list[str] = field(default_factory=list)  # relpaths found from an earlier run
    failures: list[Failure] = field(default_factory=list)

    def failed_by_reason(self) -> dict[str, int]:
        return dict(Counter(f.reason for f in self.failures).most_common())

    def text(self) -> str:
        lines = [
            f"{self.lines} lines → {self.root}",
            f"  {'downloaded':<22}{len(self.downloaded):>5}",
            f"  {'already present':<22}{len(self.present):>5}",
            f"  {'failed':<22}{len(self.failures):>5}",
        ]
        lines += [f"    {reason:<20}{n:>5}" for reason, n in self.failed_by_reason().items()]
        if self.failures:
            lines.append(f"failures, with their URLs: {self.root / FAILURES_FILE}")
        return "\n".join(lines)


def download_images(
    urls: str | Path,
    root: str | Path,
    *,
    max_size: int = 1000,
    threads: int = 8,
    timeout: float = 10.0,
    retries: int = 2,
    backoff: float = 1.0,
    max_bytes: int = 20_000_000,
) -> DownloadSummary:
    """Download every entry of the list at `urls` into `root/<label>/`; returns the summary."""
    for name, value, least in (("max_size", max_size, 8), ("threads", threads, 1)):
        if value < least:
            raise UserError(f"{name} must be at least {least}, got {value}")
    if timeout <= 0 or retries < 0 or backoff < 0 or max_bytes <= 0:
        raise UserError("timeout and max_mb must be positive, retries and backoff 0 or more")
    entries, bad_lines = read_url_list(urls)
    root = Path(root).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise UserError(f"{root} is a file, not a folder for the images")
    summary = DownloadSummary(root, len(entries) + len(bad_lines))
    summary.failures += [Failure(b.line, "", b.text, "malformed line", b.reason) for b in bad_lines]
    todo, sources = _plan(entries, root, summary)
    hosts = HostLookup()

    def one(entry: UrlEntry) -> tuple[UrlEntry, str | Failure]:
        try:
            data = fetch_with_retries(entry.url, timeout, max_bytes, retries, backoff, hosts)
            content, suffix = storable_image(data, max_size)
        except FetchError as error:
            return entry, _failure(entry, error.reason, error.detail)
        except ImageError as error:
            return entry, _failure(entry, *_image_reason(str(error)))
        relpath = f"{entry.label}/{file_stem(entry.url)}{suffix}"
        write_atomically(root / relpath, content)
        return entry, relpath

    try:
        with (
            ThreadPoolExecutor(threads) as pool,
            tqdm(total=len(todo), desc="downloading", unit="img", disable=not todo) as progress,
        ):
            futures = [pool.submit(one, entry) for entry in todo]
            try:
                for future in as_completed(futures):
                    entry, outcome = future.result()
                    if isinstance(outcome, Failure):
                        summary.failures.append(outcome)
                    else:
                        summary.downloaded.append(outcome)
                        sources[outcome] = normalized_url(entry.url)
                    progress.update()
                    progress.set_postfix(ok=len(summary.downloaded), failed=len(summary.failures))
            except KeyboardInterrupt:
                for future in futures:
                    future.cancel()
                raise
    finally:  # also when interrupted: what is on disk is recorded, a rerun resumes
        summary.failures.sort(key=lambda f: f.line)
        if root.exists() or summary.failures:
            root.mkdir(parents=True, exist_ok=True)
            _write_sources(root / SOURCES_FILE, sources)
            _write_failures(root / FAILURES_FILE, summary.failures)
    return summary


def storable_image(data: bytes, max_size: int) -> tuple[bytes, str]:
    """Bytes to keep and their extension: the download itself when it is a usable image within
    `max_size`, else the image downscaled (longer side = max_size) and encoded as JPEG.
    Raises ImageError for anything the pipeline could not read."""
    image = decode_image(data)
    height, width = image.shape[:2]
    fmt = next((f for magic, f in SIGNATURES.items() if data.startswith(magic)), None)
    if max(height, width) <= max_size and fmt in KEPT_FORMATS:
        return data, KEPT_FORMATS[fmt]
    scale = min(1.0, max_size / max(height, width))
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(
        ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    )
    assert ok, "OpenCV failed to encode a decoded image"
    return encoded.tobytes(), ".jpg"


def write_atomically(path: Path, content: bytes) -> None:
    # the temporary name is hidden: the dataset finder never reads a leftover
    with written_atomically(path) as tmp:
        tmp.write_bytes(content)


def _plan(entries: list[UrlEntry], root: Path, summary: DownloadSummary):
    """Which entries to fetch: not those listed twice, not those already on disk."""
    sources = _read_sources(root / SOURCES_FILE)
    owner = {}  # relpath without extension → normalized URL, from the sources file
    for relpath, url in sources.items():
        owner[relpath.rsplit(".", 1)[0]] = url
    on_disk = {}  # label → {stem: file name}
    first_line, todo = {}, []
    for entry in entries:
        url = normalized_url(entry.url)
        if url in first_line:
            line, label = first_line[url]
            detail = f"same address as line {line}" + (f" ({label})" * (label != entry.label))
            summary.failures.append(_failure(entry, "listed twice", detail))
            continue
        first_line[url] = (entry.line, entry.label)
        stem = file_stem(entry.url)
        if entry.label not in on_disk:
            folder = root / entry.label
            names = os.listdir(folder) if folder.is_dir() else []
            on_disk[entry.label] = {Path(n).stem: n for n in names if not n.startswith(".")}
        existing = on_disk[entry.label].get(stem)
        claimed = owner.get(f"{entry.label}/{stem}")
        if claimed is not None and claimed != url:
            detail = f"{entry.label}/{stem}.* holds the image of {claimed}"
            summary.failures.append(_failure(entry, "name clash", detail))
        elif existing:
            summary.present.append(f"{entry.label}/{existing}")
            sources[f"{entry.label}/{existing}"] = url
        else:
            todo.append(entry)
    return todo, sources


def _failure(entry: UrlEntry, reason: str, detail: str = "") -> Failure:
    return Failure(entry.line, entry.label, entry.url, reason, detail)


def _image_reason(message: str) -> tuple[str, str]:
    """The decoder's message → (summary category, detail)."""
    for prefix, reason in (
        ("not an image", "not an image"),
        ("empty file", "empty response"),
        ("too small", "image too small"),
        ("corrupt or truncated", "corrupt image"),
    ):
        if message.startswith(prefix):
            return reason, message
    return "image too large", message  # megapixel limit, decompression bomb


def _read_sources(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    return {row[0]: row[1] for row in rows[1:] if len(row) == 2}


def _write_sources(path: Path, sources: dict[str, str]) -> None:
    rows = [[relpath, sources[relpath]] for relpath in sorted(sources)]
    write_atomically(path, _tsv([["path", "url"], *rows]))


def _write_failures(path: Path, failures: list[Failure]) -> None:
    rows = [[f.line, f.label, f.url, f.reason, f.detail] for f in failures]
    write_atomically(path, _tsv([["line", "label", "url", "reason", "detail"], *rows]))


def _tsv(rows: list[list]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter="\t", lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode()


if __name__ == "__main__":  # the command moved up, beside the other entry points
    exit_with_error("this command is now python -m src.download (same arguments)", 2)
