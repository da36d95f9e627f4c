"""The URL-list downloader against a real HTTP server on 127.0.0.1 that misbehaves on purpose."""

import io
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from PIL import Image

from src.data import fetch as fetch_module
from src.data.download import download_images, storable_image
from src.data.images import decode_image, read_image
from src.data.url_list import file_stem, read_url_list
from src.errors import UserError
from tests.conftest import ROOT, free_port, image_bytes

RETRIED = ("/down.jpg", "/slow.jpg", "/cut.jpg")  # transient failures: 1 + 2 retries
TIMEOUT = 0.5  # s; the slow route answers after SLOW
SLOW = 1.5
ORIGINAL_LIST = Path("/work/shared/data/fashionTextureUrls.tsv")
UNICODE_PATH = "/bilder/Kleid mit Punkten für Damen äöü.jpg"
LONG_PATH = "/long/" + "very-long-product-name-" * 15 + ".jpg"


def plain_jpeg(size) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 40, 40)).save(buffer, "JPEG")
    return buffer.getvalue()


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # clients that hang up early (timeouts, size cap) are part of the test


class Misbehaving(BaseHTTPRequestHandler):
    """Each path is one behaviour; `hits` counts the requests per path."""

    hits: Counter = Counter()
    flaky_failures = 1  # /flaky.jpg answers 503 this many times, then the image

    def do_GET(self):  # noqa: N802 - http.server's name
        path = unquote(self.path)
        Misbehaving.hits[path] += 1
        if path.startswith("/img/") or path in (UNICODE_PATH, LONG_PATH):
            self._send(200, "image/jpeg", image_bytes(size=(64, 48), seed=len(path)))
        elif path == "/big.jpg":
            self._send(200, "image/jpeg", plain_jpeg((1600, 1200)))
        elif path == "/photo.png":
            self._send(200, "image/png", image_bytes("PNG", size=(40, 30), seed=8))
        elif path == "/pixel.png":
            self._send(200, "image/png", image_bytes("PNG", size=(1, 1)))
        elif path in ("/page.jpg", "/landing.html"):
            self._send(200, "text/html", b"<html><body>Image not found</body></html>")
        elif path == "/cut.jpg":
            body = image_bytes(size=(300, 200), seed=9)
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 3])  # then the connection closes
        elif path == "/slow.jpg":
            time.sleep(SLOW)
            self._send(200, "image/jpeg", image_bytes(seed=10))
        elif path == "/flaky.jpg":
            if Misbehaving.hits[path] <= Misbehaving.flaky_failures:
                self._send(503, "text/plain", b"busy")
            else:
                self._send(200, "image/jpeg", image_bytes(size=(50, 50), seed=11))
        elif path == "/down.jpg":
            self._send(500, "text/plain", b"server error")
        elif path == "/huge.jpg":
            self._send(200, "image/jpeg", b"\xff\xd8\xff" + bytes(300_000))
        elif path == "/moved-image":
            self._redirect("/img/target.jpg")
        elif path == "/moved-page":
            self._redirect("/landing.html")
        else:
            self._send(404, "text/html", b"<html>no such thing</html>")

    def _send(self, status, kind, body):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, target):
        self.send_response(302)
        self.send_header("Location", target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    Misbehaving.hits = Counter()
    httpd = QuietServer(("127.0.0.1", 0), Misbehaving)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def url_list(tmp_path, lines: list[str]) -> Path:
    path = tmp_path / "urls.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def download(urls: Path, root: Path, **options):
    settings = {"timeout": TIMEOUT, "retries": 2, "backoff": 0.01, "max_bytes": 200_000}
    return download_images(urls, root, **{**settings, **options})


def every_file(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_every_failure_reason_is_reported_truthfully_and_only_images_are_kept(
    server, tmp_path, monkeypatch
):
    # The client's attempts, counted where it makes them: on a loaded machine a connection
    # can time out before the server's thread reads it, so the server's count can fall short.
    attempts, real_fetch = Counter(), fetch_module.fetch

    def counted_fetch(url, *args):
        attempts[unquote(urlsplit(url).path)] += 1
        return real_fetch(url, *args)

    monkeypatch.setattr(fetch_module, "fetch", counted_fetch)
    refused = f"http://127.0.0.1:{free_port()}/nobody-listens.jpg"
    urls = url_list(
        tmp_path,
        [
            "# fabric textures, one label<TAB>url per line",
            f"dotted\t{server}/img/a.jpg",
            f"dotted\t{server}{UNICODE_PATH}",
            f"dotted\t{server}{LONG_PATH}",
            f"striped\t{server}/big.jpg",
            f"striped\t{server}/photo.png",
            f"striped\t{server}/moved-image",
            f"striped\t{server}/flaky.jpg",
            "",
            f"leopard\t{server}/missing.jpg",
            f"leopard\t{server}/down.jpg",
            f"leopard\t{server}/slow.jpg",
            f"leopard\t{server}/page.jpg",
            f"leopard\t{server}/moved-page",
            f"leopard\t{server}/cut.jpg",
            f"leopard\t{server}/pixel.png",
            f"leopard\t{server}/huge.jpg",
            f"leopard\t{refused}",
            "leopard\thttp://no-such-host.invalid/x.jpg",
            f"striped\tHTTP://127.0.0.1:{server.rsplit(':', 1)[1]}/img/a.jpg#zoom",
            "no tab on this line",
            f"../up\t{server}/img/b.jpg",
            "dotted\tftp://example.com/c.jpg",
        ],
    )
    root = tmp_path / "images" / "set"
    summary = download(urls, root)

    assert sorted(summary.downloaded) == sorted(
        [
            f"dotted/a-{file_stem(server + '/img/a.jpg')[-10:]}.jpg",
            f"dotted/{file_stem(server + UNICODE_PATH)}.jpg",
            f"dotted/{file_stem(server + LONG_PATH)}.jpg",
            f"striped/big-{file_stem(server + '/big.jpg')[-10:]}.jpg",
            f"striped/photo-{file_stem(server + '/photo.png')[-10:]}.png",
            f"striped/moved-image-{file_stem(server + '/moved-image')[-10:]}.jpg",
            f"striped/flaky-{file_stem(server + '/flaky.jpg')[-10:]}.jpg",
        ]
    )
    assert summary.present == []
    reasons = {(f.line, f.reason) for f in summary.failures}
    assert reasons == {
        (10, "HTTP 404"),
        (11, "HTTP 500"),
        (12, "timeout"),
        (13, "not an image"),
        (14, "not an image"),
        (15, "truncated"),
        (16, "image too small"),
        (17, "too large"),
        (18, "connection refused"),
        (19, "host not found"),
        (20, "listed twice"),
        (21, "malformed line"),
        (22, "malformed line"),
        (23, "malformed line"),
    }
    assert (
        summary.failed_by_reason()
        == {
            "malformed line": 3,
            "not an image": 2,
            "HTTP 404": 1,
            "HTTP 500": 1,
            "timeout": 1,
            "truncated": 1,
            "image too small": 1,
            "too large": 1,
            "connection refused": 1,
            "host not found": 1,
            "listed twice": 1,
        }
        and summary.lines == 21
    )

    # transient failures were retried (1 + 2 retries), permanent ones were not
    assert [attempts[path] for path in RETRIED] == [3, 3, 3]
    assert attempts["/missing.jpg"] == attempts["/page.jpg"] == attempts["/pixel.png"] == 1
    assert attempts["/flaky.jpg"] == 2 and attempts["/img/a.jpg"] == 1  # listed twice: once

    # exactly the images, the failure list and the sources: no partial or temporary file
    assert every_file(root) == set(summary.downloaded) | {"download_failures.tsv", "sources.tsv"}
    assert all(len(name.encode()) < 120 for name in every_file(root))
    assert "für_Damen_äöü" in next(p for p in summary.downloaded if "Kleid" in p)
    assert read_image(root / next(p for p in summary.downloaded if "big" in p)).shape == (
        750,
        1000,
        3,
    )
    failures = (root / "download_failures.tsv").read_text(encoding="utf-8").splitlines()
    assert failures[0] == "line\tlabel\turl\treason\tdetail" and len(failures) == 1 + 14
    assert f"15\tleopard\t{server}/cut.jpg\ttruncated\t" in failures[6]
    assert "21\t\tno tab on this line\tmalformed line\texpected 'label<TAB>url'" in failures[12]
    assert "same address as line 2 (dotted)" in failures[11]
    text = summary.text()
    assert text.splitlines()[1:5] == [
        "  downloaded                7",
        "  already present           0",
        "  failed                   14",
        "    malformed line          3",
    ]
    assert "\n    timeout                 1\n" in text and "download_failures.tsv" in text


def test_a_rerun_skips_what_is_there_and_fetches_only_what_failed(server, tmp_path):
    Misbehaving.flaky_failures = 5  # fails all three tries the first time
    urls = url_list(tmp_path, [f"a\t{server}/img/1.jpg", f"b\t{server}/flaky.jpg"])
    root = tmp_path / "set"
    first = download(urls, root)
    assert len(first.downloaded) == 1 and [f.reason for f in first.failures] == ["HTTP 503"]
    image = root / first.downloaded[0]
    stamp = image.stat().st_mtime_ns
    Misbehaving.flaky_failures = 0
    second = download(urls, root)
    assert second.present == first.downloaded and len(second.downloaded) == 1
    assert second.failures == [] and image.stat().st_mtime_ns == stamp
    assert Misbehaving.hits["/img/1.jpg"] == 1
    assert (root / "download_failures.tsv").read_text().splitlines() == [
        "line\tlabel\turl\treason\tdetail"
    ]
    Misbehaving.flaky_failures = 1


def test_a_file_holding_another_urls_image_is_never_overwritten(server, tmp_path):
    urls = url_list(tmp_path, [f"a\t{server}/img/1.jpg"])
    root = tmp_path / "set"
    relpath = f"a/{file_stem(server + '/img/1.jpg')}.jpg"
    (root / "a").mkdir(parents=True)
    (root / relpath).write_bytes(b"someone else's picture")
    (root / "sources.tsv").write_text(f"path\turl\n{relpath}\thttp://elsewhere/x.jpg\n")
    summary = download(urls, root)
    assert [f.reason for f in summary.failures] == ["name clash"]
    assert (root / relpath).read_bytes() == b"someone else's picture"
    assert Misbehaving.hits["/img/1.jpg"] == 0


def test_offline_every_url_fails_cleanly_and_the_command_still_prints_its_summary(tmp_path):
    port = free_port()  # nothing listens there
    urls = url_list(tmp_path, [f"a\thttp://127.0.0.1:{port}/{i}.jpg" for i in range(5)])
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "src.download",
            f"urls={urls}",
            f"data_dir={tmp_path / 'data'}",
            "retries=0",
            "timeout=2",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "\n  downloaded                0\n" in result.stdout
    assert "\n    connection refused      5\n" in result.stdout
    assert result.stderr.strip().splitlines()[-1] == (
        "error: no image could be downloaded (reasons above)"
    )
    failures = tmp_path / "data" / "images" / "urls" / "download_failures.tsv"
    assert len(failures.read_text().splitlines()) == 6


def test_bad_arguments_are_one_line_errors(tmp_path):
    for args, message in (
        ([], "error: missing urls=..."),
        ([f"urls={tmp_path}/none.tsv"], f"error: URL list {tmp_path}/none.tsv does not exist"),
        (["urls=x.tsv", "threads=many"], "error: threads must be a whole number, got 'many'"),
        (["urls=x.tsv", "color=red"], "error: unknown key 'color'; expected one of: urls, "),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "src.download", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1
        assert result.stderr.strip().startswith(message), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_large_images_are_downscaled_and_small_ones_kept_byte_for_byte():
    small = image_bytes("PNG", size=(300, 200))
    assert storable_image(small, 1000) == (small, ".png")
    content, suffix = storable_image(image_bytes(size=(2400, 600)), 1000)
    assert suffix == ".jpg" and decode_image(content).shape == (250, 1000, 3)
    tiff = image_bytes("TIFF", size=(60, 50))
    assert storable_image(tiff, 1000)[1] == ".jpg"  # stored as a format every tool reads


def test_the_url_list_reports_malformed_lines_by_number(tmp_path):
    urls = url_list(
        tmp_path,
        ["\ufeffdotted\thttp://a/1.jpg", "# comment", "", "  ", "striped http://a/2.jpg", "x\t\t"],
    )
    entries, bad = read_url_list(urls)
    assert [(e.line, e.label, e.url) for e in entries] == [(1, "dotted", "http://a/1.jpg")]
    assert [(b.line, b.reason) for b in bad] == [
        (5, "expected 'label<TAB>url', found 1 tab-separated field(s)"),
        (6, "expected 'label<TAB>url', found 3 tab-separated field(s)"),
    ]
    with pytest.raises(UserError, match="does not exist"):
        read_url_list(tmp_path / "missing.tsv")


@pytest.mark.skipif(not ORIGINAL_LIST.exists(), reason=f"{ORIGINAL_LIST} is not on this machine")
def test_the_original_fashion_texture_list_parses_into_428_uniquely_named_urls():
    entries, bad = read_url_list(ORIGINAL_LIST)
    assert bad == [] and len(entries) == 428
    assert Counter(e.label for e in entries) == {"striped": 191, "dotted": 125, "leopard": 112}
    assert len({file_stem(e.url) for e in entries}) == 428


def test_names_are_stable_readable_and_differ_for_different_addresses():
    assert file_stem("http://h/a/image1xxl.jpg") != file_stem("http://h/b/image1xxl.jpg")
    assert file_stem("HTTP://H:80/a/x.jpg#top") == file_stem("http://h/a/x.jpg")
    assert file_stem("http://h/a/x.jpg").startswith("x-")
    assert file_stem("http://h/").startswith("h-")
    assert os.sep not in file_stem("http://h/a%2Fb.jpg")
