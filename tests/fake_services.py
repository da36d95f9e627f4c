"""Real HTTP servers on 127.0.0.1 that answer as the image-search services do, in the JSON
shapes of their documentation, and a host serving the images those answers point to.

- `FakeOpenverse`: the Openverse API v1, `GET /v1/images/?q=&page=&page_size=` (the anonymous
  limit of 20 a page is enforced with a 401, as the real API does; a throttled request gets
  429 with `Retry-After`).
- `FakeCommons`: the MediaWiki Action API (formatversion=2) of Wikimedia Commons,
  `action=query&generator=search&gsrnamespace=6&prop=imageinfo`, paged with `continue`.
- `FakePexels`: the Pexels API v1, `GET /v1/search?query=&per_page=&page=`, key in
  `Authorization`.
- `ImageHost`: real JPEG bytes of the synthetic fabric textures at `/img/<label>/<n>.jpg`,
  so a dataset built from them is learnable.
"""

import contextlib
import json
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np

from src.data.synthetic import CLASSES, render_image

IMAGE_SIZE = 48  # px, longer side of the served images: small and fast to render


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client hanging up early is not the test's concern


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve `handler` on a free loopback port; yields its base URL."""
    httpd = QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


class JsonHandler(BaseHTTPRequestHandler):
    service = None  # set per server: the fake whose `answer(path, query, headers)` is used

    def do_GET(self):  # noqa: N802 - http.server's name
        parts = urlsplit(self.path)
        params = {k: v[0] for k, v in parse_qs(parts.query).items()}
        status, body, headers = self.service.answer(parts.path, params, self.headers)
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@dataclass
class Request:
    at: float  # time.monotonic()
    params: dict
    status: int


@dataclass
class FakeService:
    catalogue: dict[str, list[dict]]  # query → its results, best first, in the API's shape
    throttle: dict[tuple[str, int], str] = field(
        default_factory=dict
    )  # (query, page) → Retry-After
    failing: dict[str, int] = field(default_factory=dict)  # query → the status it always gets
    requests: list[Request] = field(default_factory=list)

    @contextlib.contextmanager
    def running(self) -> Iterator[str]:
        with serving(type("Handler", (JsonHandler,), {"service": self})) as url:
            yield url

    def log(self, params: dict, status: int, body: dict, headers: dict | None = None):
        self.requests.append(Request(time.monotonic(), params, status))
        return status, body, headers or {}

    def pages_asked(self, query: str) -> list[tuple[int, int]]:
        return [(int(r.params["page"]), r.status) for r in self.requests if _query(r) == query]


def _query(request: Request) -> str:
    return request.params.get("q") or request.params.get("query") or request.params.get("gsrsearch")


class FakeOpenverse(FakeService):
    """`/v1/images/`, answered from the catalogue; `page_count` as the real API computes it."""

    def answer(self, path, params, headers):
        if path.rstrip("/") != "/v1/images":
            return self.log(params, 404, {"detail": "Not found."})
        query, page = params.get("q", ""), int(params.get("page", 1))
        size = int(params.get("page_size", 20))
        if size > 20:  # the real API's MAX_ANONYMOUS_PAGE_SIZE
            return self.log(
                params, 401, {"detail": "Authentication credentials were not provided."}
            )
        if query in self.failing:
            detail = "Internal server error." if self.failing[query] >= 500 else "Invalid query."
            return self.log(params, self.failing[query], {"detail": detail})
        wait = self.throttle.pop((query, page), None)
        if wait is not None:
            detail = f"Request was throttled. Expected available in {wait} seconds."
            return self.log(params, 429, {"detail": detail}, {"Retry-After": wait})
        results = self.catalogue.get(query, [])
        body = {
            "result_count": len(results),
            "page_count": -(-len(results) // size),
            "page_size": size,
            "page": page,
            "results": results[(page - 1) * size : page * size],
            "warnings": [],
        }
        return self.log(params, 200, body)


def openverse_result(url: str, number: int, source: str = "flickr") -> dict:
    """One result as Openverse API v1 gives it (every documented field)."""
    ident = f"{zlib.crc32(url.encode()):08x}-0000-4000-8000-{number:012d}"
    title, creator = f"Fabric {number}", f"Photographer {number}"
    return {
        "id": ident,
        "title": title,
        "indexed_on": "2025-03-01T12:00:00Z",
        "foreign_landing_url": f"https://www.flickr.com/photos/someone/{number}",
        "url": url,
        "creator": creator,
        "creator_url": "https://www.flickr.com/photos/someone",
        "license": "by-sa",
        "license_version": "2.0",
        "license_url": "https://creativecommons.org/licenses/by-sa/2.0/",
        "provider": source,
        "source": source,
        "category": "photograph",
        "filesize": 12345,
        "filetype": "jpg",
        "tags": [{"name": "fabric", "accuracy": None, "unstable__provider": source}],
        "attribution": f'"{title}" by {creator} is licensed under CC BY-SA 2.0.',
        "fields_matched": ["title"],
        "mature": False,
        "height": IMAGE_SIZE,
        "width": IMAGE_SIZE,
        "thumbnail": f"https://api.openverse.org/v1/images/{ident}/thumb/",
        "detail_url": f"https://api.openverse.org/v1/images/{ident}/",
        "related_url": f"https://api.openverse.org/v1/images/{ident}/related/",
        "unstable__sensitivity": [],
    }


class FakeCommons(FakeService):
    """`/w/api.php?action=query&generator=search...`; the catalogue's keys are the search
    text without the ` filetype:bitmap` the client adds."""

    def answer(self, path, params, headers):
        if path != "/w/api.php" or params.get("action") != "query":
            return self.log(params, 200, {"error": {"code": "badvalue", "info": "bad action"}})
        wanted = {"generator": "search", "gsrnamespace": "6", "prop": "imageinfo"}
        if any(params.get(k) != v for k, v in wanted.items()) or "url" not in params["iiprop"]:
            return self.log(params, 200, {"error": {"code": "badparams", "info": str(params)}})
        query = params["gsrsearch"].removesuffix(" filetype:bitmap")
        offset, limit = int(params.get("gsroffset", 0)), int(params.get("gsrlimit", 10))
        files = self.catalogue.get(query, [])
        pages = [dict(page, index=offset + i + 1) for i, page in enumerate(files[offset:][:limit])]
        body = {"batchcomplete": True, "query": {"pages": pages[::-1]}}  # rank is in `index`
        if offset + limit < len(files):
            body["continue"] = {"gsroffset": offset + limit, "continue": "gsroffset||"}
        return self.log({**params, "page": offset // limit + 1}, 200, body)


def commons_page(url: str, number: int, mime: str = "image/jpeg") -> dict:
    """One file page of the answer, as the API gives it with iiprop=url|mime|extmetadata."""
    name = f"File:Fabric_{number}.jpg"
    return {
        "pageid": 1000 + number,
        "ns": 6,
        "title": name,
        "imagerepository": "local",
        "imageinfo": [
            {
                "thumburl": url,
                "thumbwidth": IMAGE_SIZE,
                "thumbheight": IMAGE_SIZE,
                "url": url + "?original",
                "descriptionurl": f"https://commons.wikimedia.org/wiki/{name}",
                "descriptionshorturl": f"https://commons.wikimedia.org/w/index.php?curid={number}",
                "mime": mime,
                "extmetadata": {
                    "LicenseShortName": {"value": "CC BY-SA 4.0", "source": "commons-desc-page"},
                    "LicenseUrl": {
                        "value": "https://creativecommons.org/licenses/by-sa/4.0",
                        "source": "commons-desc-page",
                    },
                    "Artist": {
                        "value": f'<a href="//commons.wikimedia.org/wiki/User:Weaver{number}" '
                        f'title="User:Weaver{number}">Weaver &amp; Co {number}</a>',
                        "source": "commons-desc-page",
                    },
                },
            }
        ],
    }


class FakePexels(FakeService):
    key = "test-key"

    def answer(self, path, params, headers):
        if headers.get("Authorization") != self.key:
            return self.log(params, 401, {"error": "Unauthorized"})
        query, page = params.get("query", ""), int(params.get("page", 1))
        size = int(params.get("per_page", 15))
        photos = self.catalogue.get(query, [])
        body = {"page": page, "per_page": size, "total_results": len(photos)}
        body["photos"] = photos[(page - 1) * size : page * size]
        if page * size < len(photos):
            body["next_page"] = f"https://api.pexels.com/v1/search/?page={page + 1}"
        return self.log(params, 200, body)


def pexels_photo(url: str, number: int) -> dict:
    sizes = ("original", "large2x", "large", "medium", "small", "portrait", "landscape", "tiny")
    return {
        "id": number,
        "width": IMAGE_SIZE,
        "height": IMAGE_SIZE,
        "url": f"https://www.pexels.com/photo/fabric-{number}/",
        "photographer": f"Photographer {number}",
        "photographer_url": "https://www.pexels.com/@someone",
        "photographer_id": 7,
        "avg_color": "#978E82",
        "src": {size: url + ("" if size == "large2x" else f"?{size}") for size in sizes},
        "liked": False,
        "alt": f"Fabric {number}",
    }


class ImageHandler(BaseHTTPRequestHandler):
    """`/img/<class>/<n>.jpg`: a synthetic texture of that class (deterministic); any other
    first folder serves striped ones. `copies` maps a path to the path whose bytes it serves."""

    copies: dict[str, str] = {}

    def do_GET(self):  # noqa: N802 - http.server's name
        path = self.copies.get(urlsplit(self.path).path, urlsplit(self.path).path)
        parts = path.strip("/").split("/")
        if len(parts) != 3 or parts[0] != "img" or not parts[2].endswith(".jpg"):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = texture_jpeg(parts[1] if parts[1] in CLASSES else "striped", path)
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


_textures: dict[str, bytes] = {}


def texture_jpeg(label: str, key: str) -> bytes:
    if key not in _textures:
        rng = np.random.default_rng(zlib.crc32(key.encode()))
        image = render_image(label, rng, IMAGE_SIZE)
        ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        assert ok
        _textures[key] = encoded.tobytes()
    return _textures[key]


@contextlib.contextmanager
def image_host(copies: dict[str, str] | None = None) -> Iterator[str]:
    with serving(type("Images", (ImageHandler,), {"copies": copies or {}})) as url:
        yield url
