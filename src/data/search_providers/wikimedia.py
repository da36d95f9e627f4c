"""Wikimedia Commons, freely licensed media, no key needed: the images of a full-text search
in the file namespace.

Follows the MediaWiki Action API (docs: https://www.mediawiki.org/wiki/API:Main_page) with
`formatversion=2`: `action=query&generator=search&gsrnamespace=6` finds the files
(`filetype:bitmap` keeps out videos, PDFs and drawings) and `prop=imageinfo&iiprop=url|mime|
extmetadata` gives each one's URLs and licence. The answer is `{"query": {"pages": [{"title",
"index", "imageinfo": [{"url", "thumburl", "descriptionurl", "mime", "extmetadata":
{"LicenseShortName": {"value"}, "LicenseUrl": {...}, "Artist": {...}}}]}]}, "continue": {...}}`;
the next page is asked for by sending `continue`'s keys back (`gsroffset`). Errors come
as `{"error": {"code", "info"}}`, with status 200.
"""

import html
import re

from src.data.search_providers.session import ApiSession, ImageRecord, QueryFailed

DEFAULT_BASE_URL = "https://commons.wikimedia.org/w/api.php"
PAGE_SIZE = 50  # gsrlimit: the most an anonymous client may ask for per request
THUMB_WIDTH = 1000  # px: Commons scales its originals (often 20+ MB) to this; download's max_size


def search(query: str, count: int, base_url: str, session: ApiSession) -> list[ImageRecord]:
    records: list[ImageRecord] = []
    params = {
        "action": "query",
        "format": "json",
        "formatversion": "2",
        "generator": "search",
        "gsrsearch": f"{query} filetype:bitmap",
        "gsrnamespace": "6",  # File:
        "gsrlimit": str(min(PAGE_SIZE, count)),
        "prop": "imageinfo",
        "iiprop": "url|mime|extmetadata",
        "iiurlwidth": str(THUMB_WIDTH),
        "iiextmetadatafilter": "LicenseShortName|LicenseUrl|Artist",
    }
    seen: set[str] = set()
    while len(records) < count:
        answer = session.get_json(base_url, params)
        if "error" in answer:
            error = answer["error"] if isinstance(answer["error"], dict) else {}
            raise QueryFailed(f"wikimedia: {error.get('info') or error.get('code') or 'error'}")
        pages = (answer.get("query") or {}).get("pages") or []
        new = [
            p for p in sorted(pages, key=lambda p: p.get("index", 0)) if p.get("title") not in seen
        ]
        seen.update(p.get("title") for p in new)
        records += [r for r in map(_record, new) if r is not None]
        more = answer.get("continue")
        if not isinstance(more, dict) or not new:  # the end, or a continue that goes nowhere
            break
        params = {**params, **{k: str(v) for k, v in more.items()}}
    return records[:count]


def _record(page: dict) -> ImageRecord | None:
    info = (page.get("imageinfo") or [{}])[0]
    url = info.get("thumburl") or info.get("url")
    if not url or not str(info.get("mime", "image/")).startswith("image/"):
        return None
    meta = info.get("extmetadata") or {}
    return ImageRecord(
        url=url,
        license=_text(meta, "LicenseShortName"),
        license_url=_text(meta, "LicenseUrl"),
        creator=_text(meta, "Artist"),
        landing_url=info.get("descriptionurl") or "",
        source="wikimedia",
    )


def _text(meta: dict, key: str) -> str:
    """An extmetadata value as plain text (Artist is HTML, a link to the user page)."""
    value = (meta.get(key) or {}).get("value") or ""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", str(value))).split())
