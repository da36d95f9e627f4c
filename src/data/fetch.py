"""Fetching one URL's bytes over HTTP(S): a timeout, a size cap, retries for transient errors.

Every failure becomes a FetchError whose `reason` is a few words the download summary counts
("timeout", "HTTP 404", "truncated", ...). Transient failures (timeouts, 5xx answers, 408 and
429, connections refused, reset or cut short) are retried with exponential backoff; the
others (404, unknown host, too large, TLS errors) would only fail again.
"""

import http.client
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import Future
from urllib.parse import urlsplit

from src.data.url_list import request_url

USER_AGENT = "Mozilla/5.0 (compatible; imgsweep-downloader/0.1)"  # some hosts refuse no-name agents
CHUNK = 64 * 1024
BODY_TIME_FACTOR = 6  # a body must arrive within this many timeouts (a trickle is a timeout)

# Plain HTTP(S) with redirects and the user's proxy settings; no file:, data: or ftp: URLs,
# which a redirect could otherwise lead to.
HTTP_OPENER = urllib.request.OpenerDirector()
for _handler in (
    urllib.request.ProxyHandler(),
    urllib.request.HTTPHandler(),
    urllib.request.HTTPSHandler(),
    urllib.request.HTTPRedirectHandler(),
    urllib.request.HTTPDefaultErrorHandler(),
    urllib.request.HTTPErrorProcessor(),
):
    HTTP_OPENER.add_handler(_handler)


class FetchError(Exception):
    def __init__(self, reason: str, detail: str = "", transient: bool = False):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail, self.transient = reason, detail, transient


class HostLookup:
    """Resolves each host name once, for all the threads of a download: the many URLs of a
    dead host then fail at once, instead of each waiting for the resolver's timeout (5 s for
    some names). Skipped behind a proxy, which resolves names itself."""

    def __init__(self):
        self._lock = threading.Lock()
        self._found: dict[str, Future] = {}
        self._proxied = bool(urllib.request.getproxies())

    def check(self, url: str) -> None:
        host = urlsplit(url).hostname
        if self._proxied or not host:
            return
        with self._lock:
            first = host not in self._found
            if first:
                self._found[host] = Future()
        if first:
            try:
                socket.getaddrinfo(host.encode("idna").decode("ascii"), None)
                self._found[host].set_result(None)
            except (socket.gaierror, UnicodeError) as error:
                reason = getattr(error, "strerror", None) or str(error)
                self._found[host].set_result(FetchError("host not found", reason))
        if error := self._found[host].result():
            raise FetchError(error.reason, error.detail)


def fetch_with_retries(
    url: str,
    timeout: float,
    max_bytes: int,
    retries: int,
    backoff: float,
    hosts: HostLookup | None = None,
) -> bytes:
    """`fetch`, tried again up to `retries` times after a transient failure, waiting
    `backoff`, then twice as long, and so on."""
    if hosts is not None:
        hosts.check(url)
    for attempt in range(retries + 1):
        try:
            return fetch(url, timeout, max_bytes)
        except FetchError as error:
            if not error.transient or attempt == retries:
                if attempt:
                    error.detail = f"{error.detail}; {attempt + 1} tries".lstrip("; ")
                raise
        time.sleep(backoff * 2**attempt)
    raise AssertionError("unreachable")


def fetch(url: str, timeout: float, max_bytes: int) -> bytes:
    """The body of a GET to `url` after redirects. Raises FetchError."""
    request = urllib.request.Request(
        request_url(url), headers={"User-Agent": USER_AGENT, "Accept": "image/*,*/*;q=0.5"}
    )
    try:
        with HTTP_OPENER.open(request, timeout=timeout) as response:
            return _read_body(response, timeout, max_bytes)
    except urllib.error.HTTPError as error:
        error.close()
        transient = error.code >= 500 or error.code in (408, 429)
        raise FetchError(f"HTTP {error.code}", error.reason or "", transient) from None
    except urllib.error.URLError as error:
        raise _connection_error(error.reason) from None
    except (OSError, http.client.HTTPException) as error:
        raise _connection_error(error) from None


def _read_body(response, timeout: float, max_bytes: int) -> bytes:
    declared = response.headers.get("Content-Length")
    declared = int(declared) if declared and declared.strip().isdigit() else None
    if declared is not None and declared > max_bytes:
        raise FetchError("too large", f"{declared} bytes, over the {max_bytes}-byte limit")
    deadline = time.monotonic() + BODY_TIME_FACTOR * timeout
    body = bytearray()
    try:
        while chunk := response.read(CHUNK):
            body += chunk
            if len(body) > max_bytes:
                raise FetchError("too large", f"over the {max_bytes}-byte limit")
            if time.monotonic() > deadline:
                took = f"body incomplete after {BODY_TIME_FACTOR * timeout:g} s"
                raise FetchError("timeout", took, True)
    except http.client.IncompleteRead as error:
        raise FetchError("truncated", f"{len(body) + len(error.partial)} bytes", True) from None
    if declared is not None and len(body) < declared:
        raise FetchError("truncated", f"{len(body)} of {declared} bytes", True)
    return bytes(body)


def _connection_error(reason) -> FetchError:
    if isinstance(reason, TimeoutError | socket.timeout):
        return FetchError("timeout", "no answer in time", True)
    if isinstance(reason, socket.gaierror):
        return FetchError("host not found", str(reason.strerror or reason))
    if isinstance(reason, ConnectionRefusedError):
        return FetchError("connection refused", "", True)
    if isinstance(reason, ssl.SSLError | ssl.CertificateError):
        return FetchError("TLS error", str(reason))
    if isinstance(reason, http.client.IncompleteRead):
        return FetchError("truncated", f"{len(reason.partial)} bytes", True)
    if isinstance(reason, OSError | http.client.HTTPException):
        return FetchError("connection error", str(reason) or type(reason).__name__, True)
    return FetchError("bad URL", str(reason))  # urllib's text, e.g. "unknown url type"
