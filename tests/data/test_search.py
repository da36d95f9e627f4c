"""Image-search queries to a labelled URL list, against loopback servers that answer in the
real services' JSON shapes (tests/fake_services.py), and the real services offline."""

import csv
import os
import socket
import subprocess
import sys
from urllib.parse import urlsplit

import pytest

from src.data.image_search import build_queries, search_images, sidecar, write_search_results
from src.data.search_providers import openverse, pexels, wikimedia
from src.data.url_list import read_url_list
from src.errors import UserError
from tests.conftest import ROOT, free_port
from tests.fake_services import (
    FakeCommons,
    FakeOpenverse,
    FakePexels,
    commons_page,
    openverse_result,
    pexels_photo,
)

HOST = "https://images.example.org"  # never fetched here: a search only lists URLs
MIXED = f"{HOST}/img/mixed/0.jpg"  # found by a striped and by a dotted query


def urls(label: str, numbers) -> list[str]:
    return [f"{HOST}/img/{label}/{n}.jpg" for n in numbers]


def results(addresses: list[str]) -> list[dict]:
    return [openverse_result(url, n) for n, url in enumerate(addresses)]


def rows(path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def search_command(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "src.search", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@pytest.fixture
def fake_openverse():
    """Two items x two labels, 30 results each (two pages of 20), one 429 with Retry-After,
    one URL under two labels, URLs found again by the other query of the same label, and a
    query the API refuses."""
    api = FakeOpenverse(
        {
            "shirt striped": results(
                urls("striped", range(3)) + [MIXED] + urls("striped", range(3, 29))
            ),
            "vest striped": results(urls("striped", range(20, 50))),
            "shirt dotted": results([MIXED, *urls("dotted", range(29))]),
        },
        throttle={("shirt striped", 2): "2"},  # longer than the first backoff (1 s)
        failing={"vest dotted": 400},
    )
    with api.running() as url:
        yield api, f"{url}/v1"


def test_queries_combine_every_item_with_every_label_or_are_the_labels_alone():
    queries = build_queries(["striped", "dotted"], ["shirt", "t-shirt"], None)
    assert [(q.text, q.label) for q in queries] == [
        ("shirt striped", "striped"),
        ("shirt dotted", "dotted"),
        ("t-shirt striped", "striped"),
        ("t-shirt dotted", "dotted"),
    ]
    alone = build_queries(["striped", "dotted"], None, None)
    assert [(q.text, q.label) for q in alone] == [("striped", "striped"), ("dotted", "dotted")]
    assert [q.text for q in build_queries(["leopard"], ["scarf"], "{label} print {item}")] == [
        "leopard print scarf"
    ]


@pytest.mark.parametrize(
    ("labels", "items", "template", "message"),
    [
        (["striped"], ["shirt"], "{label} shirt", r"must use \{item\} and \{label\}"),
        (["striped"], None, "{item} {label}", r"must use \{label\} \(no items= given\)"),
        (["striped"], ["shirt"], "{item} {label} {colour}", r"found colour, item, label"),
        (["-"], None, None, r"label '-' is reserved"),
        (["a/b"], None, None, r"label 'a/b' cannot be a folder name"),
        (["striped", "striped"], None, None, r"labels= names 'striped' twice"),
        ([""], None, None, r"labels= names no label"),
    ],
    ids=["no-item", "item-without-items", "unknown-field", "dash", "slash", "twice", "empty"],
)
def test_bad_labels_and_templates_are_one_clear_error(labels, items, template, message):
    with pytest.raises(UserError, match=message):
        build_queries(labels, items, template)


def test_openverse_is_paged_waits_out_a_429_and_drops_a_url_found_under_two_labels(
    fake_openverse, tmp_path
):
    api, base_url = fake_openverse
    queries = build_queries(["striped", "dotted"], ["shirt", "vest"], None)
    summary = search_images(queries, "openverse", 25, base_url=base_url)

    # paged, never more than the anonymous 20 a page, the 429's Retry-After waited out
    assert api.pages_asked("shirt striped") == [(1, 200), (2, 429), (2, 200)]
    assert all(int(r.params["page_size"]) <= openverse.PAGE_SIZE for r in api.requests)
    throttled, retried = [r for r in api.requests if r.params["q"] == "shirt striped"][1:]
    assert retried.at - throttled.at >= 2.0 and summary.waited == pytest.approx(2.0)

    # the top 25 of each query; striped 20..23 found by both striped queries, kept once
    kept = {
        label: [f.record.url for f in summary.kept if f.label == label]
        for label in ("striped", "dotted")
    }
    assert kept == {"striped": urls("striped", range(45)), "dotted": urls("dotted", range(24))}
    assert summary.repeats == {"striped": 4}
    assert [(f.label, f.query) for f in summary.ambiguous[MIXED]] == [
        ("striped", "shirt striped"),
        ("dotted", "shirt dotted"),
    ]
    assert list(summary.ambiguous) == [MIXED]
    assert [(q.text, why) for q, why in summary.failures] == [
        ("vest dotted", "HTTP 400: Invalid query.")
    ]
    text = summary.text(tmp_path / "fashion_urls.tsv")
    assert "3 of 4 queries answered by openverse (8 requests, 2 s waiting when asked to)" in text
    assert f"{MIXED}  (striped, dotted)" in text and '"vest dotted": HTTP 400' in text

    # what the downloader reads, and beside it each URL's query, licence and creator
    output = tmp_path / "fashion_urls.tsv"
    write_search_results(output, summary)
    entries, bad = read_url_list(output)
    assert not bad
    assert [(e.label, e.url) for e in entries] == [
        (label, url) for label, found in kept.items() for url in found
    ]
    provenance = rows(sidecar(output, "provenance"))
    assert [(r["label"], r["url"]) for r in provenance] == [(e.label, e.url) for e in entries]
    assert provenance[0] == {
        "label": "striped",
        "url": urls("striped", [0])[0],
        "query": "shirt striped",
        "provider": "openverse",
        "source": "flickr",
        "license": "by-sa 2.0",
        "license_url": "https://creativecommons.org/licenses/by-sa/2.0/",
        "creator": "Photographer 0",
        "landing_url": "https://www.flickr.com/photos/someone/0",
    }
    ambiguous = rows(sidecar(output, "ambiguous"))
    assert [(r["label"], r["url"]) for r in ambiguous] == [("striped", MIXED), ("dotted", MIXED)]


def test_a_retry_after_over_max_wait_fails_that_query_and_the_others_go_on():
    api = FakeOpenverse(
        {
            "striped": results(urls("striped", range(5))),
            "dotted": results(urls("dotted", range(5))),
        },
        throttle={("striped", 1): "3600"},
    )
    with api.running() as url:
        summary = search_images(
            build_queries(["striped", "dotted"], None, None), "openverse", 5, base_url=f"{url}/v1"
        )
    assert [(q.text, why) for q, why in summary.failures] == [
        (
            "striped",
            "HTTP 429: Request was throttled. Expected available in 3600 seconds.; the service "
            "asks to wait 3600 s, more than max_wait=60",
        )
    ]
    assert summary.per_label() == {"striped": 0, "dotted": 5} and summary.waited == 0


def test_server_errors_are_tried_again_then_reported_with_the_tries():
    api = FakeOpenverse({}, failing={"striped": 503})
    with api.running() as url:
        summary = search_images(
            build_queries(["striped"], None, None),
            "openverse",
            5,
            base_url=f"{url}/v1",
            backoff=0.01,
        )
    assert [why for _, why in summary.failures] == ["HTTP 503: Internal server error. (4 tries)"]
    assert len(api.requests) == 4


def test_wikimedia_commons_follows_continue_and_keeps_licence_and_plain_text_creator():
    files = [commons_page(url, n) for n, url in enumerate(urls("leopard", range(70)))]
    files.insert(2, commons_page(f"{HOST}/video.webm", 99, mime="video/webm"))
    api = FakeCommons({"scarf leopard": files})
    with api.running() as url:
        summary = search_images(
            build_queries(["leopard"], ["scarf"], None),
            "wikimedia",
            60,
            base_url=f"{url}/w/api.php",
        )
    assert not summary.failures
    assert [r.params.get("gsroffset", "0") for r in api.requests] == ["0", "50"]
    assert all(int(r.params["gsrlimit"]) <= wikimedia.PAGE_SIZE for r in api.requests)
    found = [f.record for f in summary.kept]
    assert [r.url for r in found] == urls("leopard", range(60))  # in rank order, no video
    assert found[7].license == "CC BY-SA 4.0" and found[7].creator == "Weaver & Co 7"
    assert found[7].landing_url == "https://commons.wikimedia.org/wiki/File:Fabric_7.jpg"


def test_pexels_takes_its_key_from_the_environment(monkeypatch):
    api = FakePexels(
        {"dotted": [pexels_photo(u, n) for n, u in enumerate(urls("dotted", range(90)))]}
    )
    queries = build_queries(["dotted"], None, None)
    with api.running() as url:
        monkeypatch.delenv(pexels.KEY_VARIABLE, raising=False)
        with pytest.raises(UserError, match="provider=pexels needs an API key in PEXELS_API_KEY"):
            search_images(queries, "pexels", 85, base_url=f"{url}/v1")
        monkeypatch.setenv(pexels.KEY_VARIABLE, "wrong")
        with pytest.raises(UserError, match=r"pexels \(.*\) refused the request \(HTTP 401"):
            search_images(queries, "pexels", 85, base_url=f"{url}/v1")
        monkeypatch.setenv(pexels.KEY_VARIABLE, FakePexels.key)
        summary = search_images(queries, "pexels", 85, base_url=f"{url}/v1")
    assert [f.record.url for f in summary.kept] == urls("dotted", range(85))
    assert api.pages_asked("dotted")[-2:] == [(1, 200), (2, 200)]
    assert summary.kept[0].record.creator == "Photographer 0"
    assert summary.kept[0].record.license == "Pexels License"


def test_the_command_writes_the_list_and_ends_with_a_summary(fake_openverse, tmp_path):
    _, base_url = fake_openverse
    output = tmp_path / "lists" / "fashion_urls.tsv"
    result = search_command(
        "labels=striped,dotted",
        "items=shirt,vest",
        "per_query=25",
        f"base_url={base_url}",
        f"output={output}",
    )
    assert result.returncode == 0, result.stderr
    assert "3 of 4 queries answered by openverse" in result.stdout
    assert "  striped                45 URLs  (4 found again, kept once)" in result.stdout
    assert "dropped, found under two labels or more: 1" in result.stdout
    assert "failed queries: 1" in result.stdout
    assert f"next: python -m src.download urls={output}" in result.stdout
    assert "searching openverse" in result.stderr  # the progress bar
    assert len(read_url_list(output)[0]) == 45 + 24


def test_offline_a_provider_fails_with_one_line_naming_the_service(tmp_path):
    closed = f"http://127.0.0.1:{free_port()}/v1"
    output = tmp_path / "urls.tsv"
    result = search_command("labels=striped", f"base_url={closed}", "retries=0", f"output={output}")
    assert result.returncode == 1 and result.stdout == "" and not output.exists()
    assert result.stderr.splitlines() == [
        f"error: cannot reach openverse ({closed}): connection refused; nothing was written"
    ]


@pytest.mark.parametrize("module", [openverse, wikimedia, pexels], ids=lambda m: m.__name__[25:])
def test_offline_the_real_services_fail_with_one_line_naming_them(module, tmp_path):
    host = urlsplit(module.DEFAULT_BASE_URL).hostname
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        pass
    else:
        pytest.skip(f"{host} resolves: online, and tests never call the real service")
    provider = module.__name__.rsplit(".", 1)[-1]
    env = {**os.environ, pexels.KEY_VARIABLE: "a-key"}
    result = search_command(
        "labels=striped", f"provider={provider}", f"output={tmp_path}/u.tsv", env=env
    )
    assert result.returncode == 1 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    start = f"error: cannot reach {provider} ({module.DEFAULT_BASE_URL}): host not found"
    assert line.startswith(start) and line.endswith("; nothing was written")


def test_when_no_query_gives_a_url_nothing_is_written_and_the_summary_says_why(tmp_path):
    api = FakeOpenverse({}, failing={"striped": 400})
    output = tmp_path / "urls.tsv"
    with api.running() as url:
        result = search_command("labels=striped", f"base_url={url}/v1", f"output={output}")
    assert result.returncode == 1 and not list(tmp_path.iterdir())
    assert '  "striped": HTTP 400: Invalid query.' in result.stdout
    assert result.stderr.splitlines()[-1] == (
        "error: no URL to keep (reasons above); nothing was written"
    )
