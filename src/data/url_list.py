"""A labelled URL list, the original workflow's format: one `label<TAB>url` per line, no header.

Lines starting with `#` and blank lines are ignored; a malformed line is reported with its
number and skipped, so one bad line never stops a list of hundreds. Each URL gets a stable
file name (readable part from the URL, plus a hash of the whole URL), so a rerun finds what
an earlier run already downloaded, and two URLs never share a name by accident.
"""

import hashlib
import unicodedata
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from src.errors import UserError

NAME_BYTES = 80  # longest readable part of a file name, in UTF-8 bytes (file systems allow 255)
HASH_CHARS = 10  # hex digits of the URL's hash in the name: 40 bits


@dataclass(frozen=True)
class UrlEntry:
    line: int  # 1-based line number in the list
    label: str
    url: str


@dataclass(frozen=True)
class BadLine:
    line: int
    text: str
    reason: str


def read_url_list(path: str | Path) -> tuple[list[UrlEntry], list[BadLine]]:
    """The usable entries and the malformed lines of a `label<TAB>url` list."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"URL list {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: a BOM some editors add is dropped
    except UnicodeDecodeError as error:
        raise UserError(f"URL list {path} is not UTF-8 text ({error.reason})") from None
    entries, bad = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = [field.strip() for field in line.split("\t")]
        problem = _problem(fields)
        if problem:
            bad.append(BadLine(number, line, problem))
        else:
            entries.append(UrlEntry(number, fields[0], fields[1]))
    return entries, bad


def normalized_url(url: str) -> str:
    """The URL as the server sees it: scheme and host in lower case, no default port, no
    `#fragment` (never sent), so spellings of one address share one name."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    default_port = {"http": 80, "https": 443}.get(scheme)
    netloc = host if parts.port in (None, default_port) else f"{host}:{parts.port}"
    if parts.username:
        netloc = f"{parts.username}{':' + parts.password if parts.password else ''}@{netloc}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


def request_url(url: str) -> str:
    """The URL in ASCII, as HTTP needs it: unicode host via IDNA, unicode path percent-encoded
    (escapes already there are kept)."""
    parts = urlsplit(normalized_url(url))
    netloc, host = parts.netloc, parts.hostname or ""
    if not host.isascii():
        netloc = netloc.replace(host, host.encode("idna").decode("ascii"), 1)
    safe = "/%:@!$&'()*+,;=-._~"
    return urlunsplit(
        (parts.scheme, netloc, quote(parts.path, safe=safe), quote(parts.query, safe=safe), "")
    )


def file_stem(url: str) -> str:
    """A stable, safe file name (without extension) for a URL: `<readable>-<hash>`.

    The readable part is the URL's last path segment (decoded, so unicode stays readable),
    reduced to letters, digits, `-` and `_`, and cut to NAME_BYTES; the hash is of the whole
    normalised URL, so `.../a/image1xxl.jpg` and `.../b/image1xxl.jpg` get different names."""
    normal = normalized_url(url)
    parts = urlsplit(normal)
    segment = unquote(parts.path.rstrip("/").rsplit("/", 1)[-1]) or (parts.hostname or "")
    if len(PurePosixPath(segment).suffix) <= 6:
        segment = PurePosixPath(segment).stem
    segment = unicodedata.normalize("NFC", segment)
    readable = "".join(c if c.isalnum() or c in "-_" else "_" for c in segment)
    readable = "_".join(piece for piece in readable.split("_") if piece).strip("-_")
    readable = readable.encode()[:NAME_BYTES].decode(errors="ignore") or "image"
    digest = hashlib.sha1(normal.encode()).hexdigest()[:HASH_CHARS]
    return f"{readable}-{digest}"


def _problem(fields: list[str]) -> str | None:
    if len(fields) != 2:
        return f"expected 'label<TAB>url', found {len(fields)} tab-separated field(s)"
    label, url = fields
    if not label:
        return "empty label"
    if label.startswith(".") or any(c in label for c in '/\\:*?"<>|') or label != label.strip():
        return f"label {label!r} cannot be a folder name"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        return f"not a URL: {url!r}"
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return f"not an http(s) URL: {url!r}"
    return None
