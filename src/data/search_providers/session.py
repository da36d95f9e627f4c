"""Asking a search service for JSON, politely: a timeout, a size cap, and backing off when it
says so.

A 429 or 503 is waited out as its `Retry-After` header asks (seconds or an HTTP date), never
longer than `max_wait`; without the header the wait doubles from `backoff`. Other 5xx answers,
timeouts and dropped connections are retried the same way. What stays wrong becomes one of
two errors: `QueryFailed` (this query; the next one may work) or `ServiceUnreachable` (no
query can work: no network, unknown host, a refused key), whose message names the service.
"""

import email.utils
import http.client
import json
import socket
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import urlencode

from src.data.fetch import HTTP_OPENER  # plain HTTP(S), redirects, proxies: as downloads

USER_AGENT = "imgsweep-search/0.1 (image dataset builder; python-urllib)"  # services ask for one
MAX_BYTES = 20_000_000  # a page of search results is tens of kB; more is not a search answer


@dataclass(frozen=True)
class ImageRecord:
    url: str  # the image itself, what the downloader fetches
    license: str = ""  # as the service names it: "by-sa 2.0", "CC BY-SA 4.0", "Pexels License"
    license_url: str = ""
    creator: str = ""  # whom to credit
    landing_url: str = ""  # the page the image is shown and credited on
    source: str = ""  # where the service found it (Openverse: flickr, wikimedia, ...)


class QueryFailed(Exception):
    """This query got no usable answer; the others may."""


class ServiceUnreachable(Exception):
    """No query can get an answer: the network, the host or the key is the problem."""


@dataclass
class ApiSession:
    service: str  # named in every error: "openverse"
    timeout: float = 20.0  # s without an answer, per request
    retries: int = 3  # further tries after a 429, a 5xx, a timeout or a dropped connection
    backoff: float = 1.0  # s before the first retry when the service names no wait, doubled after
    max_wait: float = 60.0  # s: a longer Retry-After fails the query (see src/search.py)
    headers: dict[str, str] = field(default_factory=dict)  # a key, for the services needing one
    requests: int = 0
    waited: float = 0.0  # s spent backing off, for the summary

    def get_json(self, url: str, params: dict | None = None) -> dict:
        address = f"{url}?{urlencode(params)}" if params else url
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json", **self.headers}
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            self.requests += 1
            try:
                with HTTP_OPENER.open(
                    urllib.request.Request(address, headers=headers), timeout=self.timeout
                ) as response:
                    body = response.read(MAX_BYTES + 1)
            except urllib.error.HTTPError as error:
                wait = self._wait_after_http_error(error, attempt, last)
            except urllib.error.URLError as error:
                wait = self._wait_after_network_error(error.reason, attempt, last)
            except (OSError, http.client.HTTPException) as error:
                wait = self._wait_after_network_error(error, attempt, last)
            else:
                return _parse(body, self.service)
            time.sleep(wait)
            self.waited += wait
        raise AssertionError("unreachable")

    def _wait_after_http_error(self, error: urllib.error.HTTPError, attempt: int, last: bool):
        message = _error_message(error)
        status = f"HTTP {error.code}" + (f": {message}" if message else "")
        if error.code in (401, 403):  # every query would be refused the same way
            raise ServiceUnreachable(f"{self.service} refused the request ({status})")
        if error.code not in (408, 429) and error.code < 500:
            raise QueryFailed(status)
        asked = _retry_after(error.headers.get("Retry-After"))
        if asked is not None and asked > self.max_wait:
            raise QueryFailed(
                f"{status}; the service asks to wait {asked:.0f} s, more than max_wait="
                f"{self.max_wait:g}"
            )
        if last:
            raise QueryFailed(f"{status} ({attempt + 1} tries)")
        return asked if asked is not None else self.backoff * 2**attempt

    def _wait_after_network_error(self, reason, attempt: int, last: bool) -> float:
        problem, transient = _describe(reason)
        if not transient or last:
            tries = f" ({attempt + 1} tries)" if attempt else ""
            raise ServiceUnreachable(f"cannot reach {self.service}: {problem}{tries}")
        return self.backoff * 2**attempt


def _parse(body: bytes, service: str) -> dict:
    if len(body) > MAX_BYTES:
        raise QueryFailed(f"answer over {MAX_BYTES} bytes; not a page of search results")
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise QueryFailed(f"{service} answered with something that is not JSON") from None
    if not isinstance(data, dict):
        raise QueryFailed(f"{service} answered with JSON that is not an object")
    return data


def _error_message(error: urllib.error.HTTPError) -> str:
    """The few words an API puts in its error body (`detail`, `message`, `error`), else the
    status line's reason."""
    try:
        data = json.loads(error.read(64_000))
    except (OSError, ValueError, http.client.HTTPException):
        data = None
    finally:
        error.close()
    if isinstance(data, dict):
        for key in ("detail", "message", "error", "info"):
            value = data.get(key)
            if isinstance(value, dict):
                value = value.get("message") or value.get("info") or json.dumps(value)
            if value:
                return " ".join(str(value).split())[:200]
    return str(error.reason or "")


def _retry_after(value: str | None) -> float | None:
    """Seconds a `Retry-After` header asks for: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _describe(reason) -> tuple[str, bool]:
    """(a few words, whether trying again could help) for a network error."""
    if isinstance(reason, TimeoutError | socket.timeout):
        return "no answer in time", True
    if isinstance(reason, socket.gaierror):
        return f"host not found ({reason.strerror or reason})", False
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused", True
    if isinstance(reason, ssl.SSLError | ssl.CertificateError):
        return f"TLS error ({reason})", False
    if isinstance(reason, OSError | http.client.HTTPException):
        return f"connection error ({reason or type(reason).__name__})", True
    return str(reason), False  # urllib's text, e.g. "unknown url type"
