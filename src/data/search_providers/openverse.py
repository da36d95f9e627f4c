"""Openverse (openverse.org), openly licensed images, no key needed.

Follows the Openverse API v1 image search, `GET /v1/images/?q=...&page=...&page_size=...`
(docs: https://api.openverse.org/v1/), as served in 2026: an answer is `{"result_count",
"page_count", "page_size", "page", "results": [...]}`, each result with `url` (the image),
`license` and `license_version` ("by-sa", "2.0"), `license_url`, `creator`,
`foreign_landing_url` (the page to credit) and `source` (flickr, wikimedia, ...).
Anonymous clients get at most 20 results a page and 20 pages (the API's
MAX_ANONYMOUS_PAGE_SIZE and MAX_PAGINATION_DEPTH), and are throttled with 429 and
`Retry-After` (the session waits it out).
"""

from src.data.search_providers.session import ApiSession, ImageRecord, QueryFailed

DEFAULT_BASE_URL = "https://api.openverse.org/v1"
PAGE_SIZE = 20  # the most an anonymous client may ask for; more is answered with 401
MAX_PAGES = 20  # the API's pagination depth


def search(query: str, count: int, base_url: str, session: ApiSession) -> list[ImageRecord]:
    records: list[ImageRecord] = []
    page, page_count = 1, 1
    while len(records) < count and page <= min(page_count, MAX_PAGES):
        answer = session.get_json(
            f"{base_url.rstrip('/')}/images/",
            {"q": query, "page": page, "page_size": min(PAGE_SIZE, count)},
        )
        results = answer.get("results")
        if not isinstance(results, list):
            raise QueryFailed("openverse's answer has no 'results' list")
        if not results:
            break
        records += [_record(r) for r in results if isinstance(r, dict) and r.get("url")]
        page_count = int(answer.get("page_count") or 0)
        page += 1
    return records[:count]


def _record(result: dict) -> ImageRecord:
    terms = " ".join(str(result.get(k) or "") for k in ("license", "license_version")).strip()
    return ImageRecord(
        url=result["url"],
        license=terms,
        license_url=result.get("license_url") or "",
        creator=result.get("creator") or "",
        landing_url=result.get("foreign_landing_url") or "",
        source=result.get("source") or result.get("provider") or "",
    )
