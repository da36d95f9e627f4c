"""Pexels (pexels.com): the example of a service that needs a key. The key is free
(https://www.pexels.com/api/) and is read from the environment, PEXELS_API_KEY, never from
the command line (where it would end up in shell histories and logs).

Follows the Pexels API v1, `GET /v1/search?query=...&per_page=...&page=...` with the key in
the `Authorization` header (docs: https://www.pexels.com/api/documentation/): an answer is
`{"page", "per_page", "total_results", "photos": [...], "next_page"}`, each photo with `src`
(the image in several sizes), `photographer` and `url` (its page). Every photo is under the
Pexels License. Chosen over Google's Custom Search JSON API, which is closed to new
customers and ends its whole-web search on 1 January 2027; SerpAPI and the like are a
module of this size each.
"""

import os

from src.data.search_providers.session import ApiSession, ImageRecord, QueryFailed
from src.errors import UserError

DEFAULT_BASE_URL = "https://api.pexels.com/v1"
KEY_VARIABLE = "PEXELS_API_KEY"
PAGE_SIZE = 80  # per_page: the API's maximum
SIZE = "large2x"  # 940 x 650 at twice the density: enough for download's 1000 px, not 20 MB


def prepare(session: ApiSession) -> None:
    """Put the key on every request of the session, or say how to get one."""
    key = os.environ.get(KEY_VARIABLE, "").strip()
    if not key:
        raise UserError(
            f"provider=pexels needs an API key in {KEY_VARIABLE} (free at https://www.pexels.com/api/)"
        )
    session.headers["Authorization"] = key


def search(query: str, count: int, base_url: str, session: ApiSession) -> list[ImageRecord]:
    records: list[ImageRecord] = []
    page = 1
    while len(records) < count:
        answer = session.get_json(
            f"{base_url.rstrip('/')}/search",
            {"query": query, "per_page": min(PAGE_SIZE, count), "page": page},
        )
        photos = answer.get("photos")
        if not isinstance(photos, list):
            raise QueryFailed("pexels' answer has no 'photos' list")
        records += [r for r in map(_record, photos) if r is not None]
        if not photos or not answer.get("next_page"):
            break
        page += 1
    return records[:count]


def _record(photo) -> ImageRecord | None:
    sizes = photo.get("src") if isinstance(photo, dict) else None
    url = isinstance(sizes, dict) and (sizes.get(SIZE) or sizes.get("original"))
    if not url:
        return None
    return ImageRecord(
        url=url,
        license="Pexels License",
        license_url="https://www.pexels.com/license/",
        creator=photo.get("photographer") or "",
        landing_url=photo.get("url") or "",
        source="pexels",
    )
