"""The results page: self-contained, one entry per image, worst mistakes first; it renders and
its filters and CSV export work in a real (headless) Chromium."""

import html
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from src.data.folders import find_images
from src.data.images import read_image
from src.evaluation.gradcam import ClassMaps
from src.evaluation.results_page import overlay, worst_first, write_results_page
from tests.conftest import write_dataset

CHROMIUM = next(
    (
        found
        for name in ("chromium", "chromium-browser", "google-chrome")
        if (found := shutil.which(name))
    ),
    None,
)
CLASSES = ["dotted", "leopard", "striped"]
# per image: true class, probabilities; two mistakes (confident and unsure), four right
CASES = {
    "dotted/dotted_000.jpg": (0, [0.90, 0.05, 0.05]),
    "dotted/dotted_001.jpg": (0, [0.20, 0.10, 0.70]),  # wrong, sure: the worst
    "leopard/leopard_000.jpg": (1, [0.30, 0.40, 0.30]),  # right, unsure
    "leopard/leopard_001.jpg": (1, [0.45, 0.35, 0.20]),  # wrong, unsure
    "striped/striped_000.jpg": (2, [0.10, 0.10, 0.80]),
    "striped/striped_001.jpg": (2, [0.02, 0.03, 0.95]),
}


class Entries(HTMLParser):
    """The page's image entries in document order, and every resource it would load."""

    def __init__(self):
        super().__init__()
        self.items, self.resources, self.scripts = [], [], 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "div" and "item" in attrs.get("class", "").split():
            self.items.append(attrs)
        for key in ("src", "href"):
            if key in attrs:
                self.resources.append(attrs[key])
        self.scripts += tag == "script"


@pytest.fixture
def page(tmp_path) -> Path:
    root = write_dataset(tmp_path / "set", {"dotted": 2, "leopard": 2, "striped": 2})
    _, files = find_images(root)
    assert [f.relpath for f in files] == list(CASES)
    y_true = [CASES[f.relpath][0] for f in files]
    scores = np.array([CASES[f.relpath][1] for f in files])
    return write_results_page(tmp_path / "results.html", files, y_true, scores, CLASSES, root)


def test_the_page_lists_every_test_image_worst_mistakes_first(page):
    parser = Entries()
    parser.feed(page.read_text(encoding="utf-8"))
    order = [(item["data-path"], item["data-true"], item["data-pred"]) for item in parser.items]
    assert order == [
        ("dotted/dotted_001.jpg", "dotted", "striped"),  # wrong at 0.70
        ("leopard/leopard_001.jpg", "leopard", "dotted"),  # wrong at 0.45
        ("leopard/leopard_000.jpg", "leopard", "leopard"),  # right at 0.40
        ("striped/striped_000.jpg", "striped", "striped"),  # right at 0.80
        ("dotted/dotted_000.jpg", "dotted", "dotted"),  # right at 0.90
        ("striped/striped_001.jpg", "striped", "striped"),  # right at 0.95
    ]
    assert [item["class"] for item in parser.items[:3]] == [
        "item wrong",
        "item wrong",
        "item right",
    ]
    text = page.read_text(encoding="utf-8")
    assert "6 images, 2 mistakes, accuracy 0.667." in text
    assert len(re.findall('class="bar[" ]', text)) == 6 * 3  # a score bar per class


def test_the_page_is_self_contained(page):
    parser = Entries()
    parser.feed(page.read_text(encoding="utf-8"))
    assert parser.resources and all(
        r.startswith("data:image/jpeg;base64,") for r in parser.resources
    )
    assert parser.scripts == 1 and "<link" not in page.read_text()


def test_worst_first_puts_confident_mistakes_before_unsure_ones_before_right_ones():
    y_true = np.array([0, 0, 1, 1])
    scores = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.55, 0.45]])
    assert list(worst_first(y_true, scores)) == [1, 3, 2, 0]


def chromium(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={cwd / 'chromium-profile'}",
            *args,
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary on PATH (apt-get install -y chromium)"
)


@needs_chromium
def test_the_page_renders_and_filters_from_its_address_in_chromium(page, tmp_path):
    shot = tmp_path / "page.png"
    result = chromium("--window-size=1200,900", f"--screenshot={shot}", page.as_uri(), cwd=tmp_path)
    assert shot.exists(), result.stderr[-2000:]
    assert read_image(shot).shape == (900, 1200, 3)
    result = chromium("--dump-dom", page.as_uri() + "#show=mistakes", cwd=tmp_path)
    assert 'id="count">showing 2 of 6 images<' in result.stdout, result.stderr[-2000:]


@needs_chromium
def test_ticked_images_export_as_csv_inside_a_sandboxed_frame_as_the_mlflow_ui_shows_it(
    page, tmp_path
):
    """The MLflow UI shows an HTML artifact in `<iframe sandbox="allow-scripts">` loaded from
    a blob URL: scripts run, downloads are blocked. Here a user ticks the first four images
    (two wrong, two right), changes one label, sets one aside (`-`) and exports; the frame
    reports the CSV text."""
    exported, result = exported_in_sandboxed_frame(
        page,
        "for (const box of Array.from(document.querySelectorAll('.tick')).slice(0, 4))"
        " box.click(); const menus = document.querySelectorAll('.item select');"
        " menus[1].value = 'striped'; menus[3].value = '-';",
        tmp_path,
    )
    assert exported.splitlines() == [
        "path,new_label",
        "dotted/dotted_001.jpg,striped",  # the prediction is the suggested label
        "leopard/leopard_001.jpg,striped",  # changed by hand
        "leopard/leopard_000.jpg,dotted",  # a right one: the first other class
        "striped/striped_000.jpg,-",  # set aside: relabel moves it to the quarantine
    ], result.stderr[-2000:]


def exported_in_sandboxed_frame(page: Path, user: str, tmp_path: Path):
    """The export box's text after the script `user` (ticks, label choices) ran in `page`
    and the export button was clicked, inside a sandboxed frame as the MLflow UI shows it;
    and chromium's result."""
    user = (
        f"<script>{user} document.getElementById('export').click();"
        " parent.postMessage(document.getElementById('export-text').value, '*');</script></body>"
    )
    framed = page.read_text(encoding="utf-8").replace("</body>", user)
    harness = tmp_path / "mlflow_like.html"
    harness.write_text(
        "<!DOCTYPE html><html><body><pre id='out'>no message</pre><script>"
        "addEventListener('message', (e) => { document.getElementById('out').textContent ="
        " e.data; });"
        f"const page = {json.dumps(framed).replace('</', '<' + chr(92) + '/')};"
        "const frame = document.createElement('iframe'); frame.sandbox = 'allow-scripts';"
        "frame.src = URL.createObjectURL(new Blob([page], {type: 'text/html'}));"
        "document.body.appendChild(frame);</script></body></html>",
        encoding="utf-8",
    )
    # On a busy machine the framed blob page sometimes never reports (1 run in 6, whatever the
    # virtual time): Chromium's start, not the page, which exports the same text each time
    for _ in range(3):
        result = chromium(
            "--virtual-time-budget=5000", "--dump-dom", harness.as_uri(), cwd=tmp_path
        )
        exported = result.stdout.split('<pre id="out">', 1)[1].split("</pre>", 1)[0]
        if exported != "no message":
            break
    return html.unescape(exported), result


@pytest.mark.slow
@needs_chromium
def test_the_mlflow_ui_opens_the_page_in_its_html_artifact_view(mlflow_server, page, tmp_path):
    client = MlflowClient(mlflow_server)
    experiment = client.create_experiment(f"results-page-{tmp_path.name}")
    run = client.create_run(experiment)
    client.log_artifact(run.info.run_id, str(page), "evaluation")
    client.set_terminated(run.info.run_id)
    url = (
        f"{mlflow_server}/#/experiments/{experiment}/runs/{run.info.run_id}"
        "/artifacts/evaluation/results.html"
    )
    result = chromium("--virtual-time-budget=30000", "--dump-dom", url, cwd=tmp_path)
    frames = re.findall(r"<iframe[^>]*>", result.stdout)
    assert any(
        'class="mlflow-html-iframe"' in f and 'src="blob:' in f and 'sandbox="allow-scripts"' in f
        for f in frames
    ), frames or result.stdout[-2000:]


@pytest.fixture
def page_with_maps(tmp_path) -> Path:
    """The page of `page`, with Grad-CAM maps: each image's map peaks in a corner of its own."""
    root = write_dataset(tmp_path / "set", {"dotted": 2, "leopard": 2, "striped": 2})
    _, files = find_images(root)
    y_true = [CASES[f.relpath][0] for f in files]
    scores = np.array([CASES[f.relpath][1] for f in files])
    predicted = np.zeros((6, 4, 4), np.float16)
    predicted[:, 0, 0] = 1  # top left
    true = np.zeros((6, 4, 4), np.float16)
    true[:, 3, 3] = 1  # bottom right
    maps = ClassMaps(predicted, true, "featurizer.1.layer4")
    return write_results_page(
        tmp_path / "results.html", files, y_true, scores, CLASSES, root, maps=maps
    )


def test_each_card_carries_its_predicted_and_where_wrong_its_true_class_map(page_with_maps):
    entries = Entries()
    entries.feed(page_with_maps.read_text())
    images = re.findall(r"<img [^>]*>", page_with_maps.read_text())
    assert len(images) == 6 and all("data-heat-pred=" in i for i in images)
    wrong = [i for i, e in zip(images, entries.items, strict=True) if "wrong" in e["class"]]
    assert len(wrong) == 2 and all("data-heat-true=" in i for i in wrong)
    assert sum("data-heat-true=" in i for i in images) == 2  # right ones: one class to show
    assert all(r.startswith("data:image/jpeg;base64,") for r in entries.resources)


def test_overlay_is_red_where_the_map_peaks_and_blue_where_it_is_zero():
    grey = np.full((128, 128, 3), 128, np.uint8)
    cam = np.zeros((4, 4), np.float32)
    cam[0, 0] = 1
    blended = overlay(grey, cam).astype(int)
    red, green, blue = blended[5, 5]
    assert red > blue + 40  # the peak: red
    red, green, blue = blended[120, 120]
    assert blue > red + 40  # nothing: blue


@needs_chromium
def test_the_heat_map_switch_shows_every_cards_map_in_chromium(page_with_maps, tmp_path):
    result = chromium("--dump-dom", page_with_maps.as_uri() + "#heat=true", cwd=tmp_path)
    dom = result.stdout
    assert 'id="count">showing 6 of 6 images<' in dom, result.stderr[-2000:]
    images = re.findall(r"<img [^>]*>", dom)
    shown = [re.search(r' src="([^"]+)"', i).group(1) for i in images]
    true = [re.search(r'data-heat-true="([^"]+)"', i) for i in images]
    pred = [re.search(r'data-heat-pred="([^"]+)"', i).group(1) for i in images]
    # true class where it differs, else the predicted one: no card keeps its plain thumbnail
    assert [s == (t.group(1) if t else p) for s, t, p in zip(shown, true, pred, strict=True)] == [
        True
    ] * 6
    buttons = re.findall(r'class="heat">([^<]+)<', dom)
    assert sorted(buttons) == ["heat map: predicted"] * 4 + ["heat map: true class"] * 2
