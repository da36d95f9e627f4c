"""The README's walk-through, "From image-search queries to a registered model", command by
command against loopback servers: a fake Openverse (API v1 JSON, two pages a query, one 429
with Retry-After, one URL found under a striped and a dotted query) and a host serving the
images, synthetic fabric textures of the query's class (so the model has something to learn).

    search → download → dedup → train → results page → relabel / set aside → train → register
"""

import csv
import io
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from src.data.quarantine import quarantine_folder
from tests.conftest import ROOT, run_cli
from tests.fake_services import FakeOpenverse, image_host, openverse_result

LABELS = ("striped", "dotted", "leopard")
ITEMS = ("shirt", "vest")
PER_QUERY = 22  # two pages of Openverse's 20
COPY = ("/img/dotted/1.jpg", "/img/dotted/0.jpg")  # served the same bytes: dedup's to find


class Items(HTMLParser):
    """The results page's image entries (data-path, data-true, data-pred), worst first."""

    def __init__(self):
        super().__init__()
        self.items = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "div" and "item" in attrs.get("class", "").split():
            self.items.append(attrs)


def catalogue(images: str) -> dict[str, list[dict]]:
    """Per label, the shirt query finds images 0..29 and the vest query 12..41 (a shirt or a
    vest in the same fabric: results overlap); one image is found by both shirt queries of
    striped and dotted."""
    mixed = f"{images}/img/mixed/0.jpg"
    found = {}
    for label in LABELS:
        shirt = [f"{images}/img/{label}/{n}.jpg" for n in range(30)]
        if label in ("striped", "dotted"):
            shirt.insert(4, mixed)
        vest = [f"{images}/img/{label}/{n}.jpg" for n in range(12, 42)]
        for item, addresses in (("shirt", shirt), ("vest", vest)):
            found[f"{item} {label}"] = [openverse_result(u, n) for n, u in enumerate(addresses)]
    return found


def command(module: str, *args: str) -> subprocess.CompletedProcess:
    """`python -m <module> <args>` from the checkout, as the README runs it."""
    result = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"{module}: {result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


def only_new_run(client: MlflowClient, seen: set[str]):
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    (run,) = [r for r in runs if r.info.run_id not in seen]
    return run


def split_of(client: MlflowClient, run, tmp: Path) -> dict[str, dict]:
    path = client.download_artifacts(run.info.run_id, "data/split.csv", str(tmp))
    return {row["path"]: row for row in csv.DictReader(io.StringIO(Path(path).read_text()))}


def walk_through(tmp_path: Path, train_again: bool) -> None:
    work = tmp_path / "work"  # what the README keeps under the checkout: lists, data, store
    work.mkdir()
    urls, data, store = (
        work / "fashion_urls.tsv",
        work / "data",
        f"sqlite:///{work}/mlruns/mlflow.db",
    )
    root = data / "images" / "fashion_urls"
    with image_host({COPY[0]: COPY[1]}) as images:
        api = FakeOpenverse(catalogue(images), throttle={("vest leopard", 2): "1"})
        with api.running() as openverse:
            # 1. search: 6 queries, each two pages; the 429 waited out
            searched = command(
                "src.search",
                f"labels={','.join(LABELS)}",
                f"items={','.join(ITEMS)}",
                f"per_query={PER_QUERY}",
                "provider=openverse",
                f"base_url={openverse}/v1",
                f"output={urls}",
            )
            assert api.pages_asked("vest leopard") == [(1, 200), (2, 429), (2, 200)]
            # per label: shirt 0..21 and vest 12..33, 0..33 in all; the images 12..21 are
            # found twice (12..20 with striped and dotted, whose shirt query found the mixed one)
            assert (
                "6 of 6 queries answered by openverse (13 requests, 1 s waiting" in searched.stdout
            )
            for label, again in (("striped", 9), ("dotted", 9), ("leopard", 10)):
                assert (
                    f"  {label:<20}   34 URLs  ({again} found again, kept once)" in searched.stdout
                )
            assert f"{images}/img/mixed/0.jpg  (striped, dotted)" in searched.stdout

            # 2. download, 3. dedup (one copy set aside)
            command("src.download", f"urls={urls}", f"data_dir={data}")
        assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(LABELS)
        assert sum(1 for _ in root.rglob("*.jpg")) == 3 * 34
    deduped = command("src.dedup", f"root={root}", "apply=true", f"data_dir={data}")
    assert "1 group(s) of duplicates" in deduped.stdout
    quarantine = quarantine_folder(root)
    assert len(list(quarantine.rglob("*.jpg"))) == 1

    # 4. train, 5. the results page: worst mistakes first
    first = run_cli("dataset=folder", f"dataset.root={root}", tmp=work)
    assert first.returncode == 0, first.stderr[-3000:]
    client = MlflowClient(store)
    run = only_new_run(client, set())
    page = Path(
        client.download_artifacts(run.info.run_id, "evaluation/results_test.html", str(tmp_path))
    )
    parser = Items()
    parser.feed(page.read_text(encoding="utf-8"))
    worst, second = parser.items[:2]

    # 6. set the worst one aside, relabel the next one, as the page's CSV export writes them
    new_label = (
        second["data-pred"]
        if second["data-pred"] != second["data-true"]
        else next(c for c in LABELS if c != second["data-true"])
    )
    (work / "relabel.csv").write_text(
        f"path,new_label\n{worst['data-path']},-\n{second['data-path']},{new_label}\n"
    )
    moves = work / "relabel.csv"
    moved = command("src.relabel", f"moves={moves}", f"root={root}", "apply=true")
    assert "moved 2 file(s)" in moved.stdout
    assert (quarantine / worst["data-path"]).exists() and not (root / worst["data-path"]).exists()
    relabelled = f"{new_label}/{second['data-path'].split('/', 1)[1]}"
    assert (root / relabelled).exists()
    if not train_again:
        return

    # 7. train again: the set-aside image is out, the relabelled one is in its new class
    again = run_cli("dataset=folder", f"dataset.root={root}", tmp=work)
    assert again.returncode == 0, again.stderr[-3000:]
    run2 = only_new_run(client, {run.info.run_id})
    split = split_of(client, run2, tmp_path / "second")
    assert worst["data-path"] not in split and second["data-path"] not in split
    assert split[relabelled]["label"] == new_label
    assert len(split) == 3 * 34 - 2  # the copy dedup set aside and the image set aside by hand

    # 8. register it
    registered = command(
        "src.register",
        f"run_id={run2.info.run_id}",
        "name=fashion-texture",
        "alias=champion",
        f"tracking_uri={store}",
    )
    assert "models:/fashion-texture@champion now points to version 1" in registered.stdout
    version = client.get_model_version_by_alias("fashion-texture", "champion")
    assert version.run_id == run2.info.run_id


@pytest.mark.slow  # five command starts and a run
def test_from_queries_to_a_first_model_then_relabel_and_set_aside(tmp_path):
    walk_through(tmp_path, train_again=False)


@pytest.mark.slow
def test_from_queries_to_a_registered_model(tmp_path):
    walk_through(tmp_path, train_again=True)
