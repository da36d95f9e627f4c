"""The label issues page: flagged images first in the list's order, only they on view at
first; its filters read the address, a skipped search is said, text is escaped, and what a
user ticks in a real (headless) Chromium exports as a CSV that relabel accepts."""

import re

import numpy as np
import pytest

import src.evaluation.label_issues_page as label_issues_page
from src.data.folders import find_images
from src.data.relabel import Move, read_moves
from src.evaluation.label_issues import LabelIssues
from src.evaluation.label_issues_page import write_label_issues_page
from tests.conftest import image_bytes, write_dataset
from tests.evaluation.test_results_page import (
    Entries,
    chromium,
    exported_in_sandboxed_frame,
    needs_chromium,
)

CLASSES = ["dotted", "leopard", "striped"]
ODD = 'dotted/say "hi" & bye.jpg'  # quotes and an ampersand, in HTML and in the CSV
# per image (find_images' order): given class, split, out-of-fold probabilities
CASES = {
    "dotted/dotted_000.jpg": (0, "train", [0.90, 0.05, 0.05]),  # score 0.10
    "dotted/dotted_001.jpg": (0, "train", [0.50, 0.30, 0.20]),  # 0.50
    "dotted/dotted_002.jpg": (0, "val", [0.80, 0.10, 0.10]),  # 0.20
    ODD: (0, "val", [0.30, 0.70, 0.00]),  # 0.70, flagged
    "leopard/leopard_000.jpg": (1, "train", [0.10, 0.60, 0.30]),  # 0.40
    "leopard/leopard_001.jpg": (1, "train", [0.05, 0.10, 0.85]),  # 0.90, flagged
    "leopard/leopard_002.jpg": (1, "test", [0.20, 0.70, 0.10]),  # 0.30
    "striped/striped_000.jpg": (2, "test", [0.02, 0.03, 0.95]),  # 0.05
    "striped/striped_001.jpg": (2, "train", [0.35, 0.00, 0.65]),  # 0.35
    "striped/striped_002.jpg": (2, "val", [0.10, 0.10, 0.80]),  # 0.20, flagged (duplicate)
}
DUPLICATE = "near-duplicate of dotted/dotted_000.jpg (dotted)"
ROWS = [  # as label_issues lists them: most likely wrong first
    ("leopard/leopard_001.jpg", "leopard", "striped", 0.9, "train", "out-of-fold"),
    (ODD, "dotted", "leopard", 0.7, "val", "out-of-fold"),
    ("striped/striped_002.jpg", "striped", "dotted", 0.2, "val", DUPLICATE),
]


def issues(skipped=None, rows=ROWS) -> LabelIssues:
    keys = ("path", "given_label", "suggested_label", "score", "split", "reason")
    flagged = np.array([any(row[0] == path for row in rows) for path in CASES])
    probabilities = np.array([case[2] for case in CASES.values()])
    noise = dict.fromkeys(CLASSES, 0.1)
    given = np.array([case[0] for case in CASES.values()])
    scores = 1 - probabilities[np.arange(len(given)), given]
    others = np.where(np.eye(3, dtype=bool)[given], -np.inf, probabilities)
    suggested = others.argmax(axis=1)
    for row in rows:  # a flagged image is pointed where its row says
        suggested[list(CASES).index(row[0])] = CLASSES.index(row[2])
    return LabelIssues(
        [dict(zip(keys, row, strict=True)) for row in rows],
        flagged,
        probabilities,
        scores,
        suggested,
        noise,
        skipped,
    )


@pytest.fixture
def dataset(tmp_path):
    root = write_dataset(tmp_path / "set", {"dotted": 3, "leopard": 3, "striped": 3})
    (root / ODD).write_bytes(image_bytes(seed=7, size=(40, 32)))
    classes, files = find_images(root)
    assert classes == CLASSES and [f.relpath for f in files] == list(CASES)
    return root, files


def write_page(dataset, tmp_path, found: LabelIssues, **options):
    root, files = dataset
    labels = [case[0] for case in CASES.values()]
    splits = [case[1] for case in CASES.values()]
    return write_label_issues_page(
        tmp_path / "label_issues.html", found, files, labels, splits, CLASSES, root, **options
    )


@pytest.fixture
def page(dataset, tmp_path):
    return write_page(dataset, tmp_path, issues())


def cards(html: str) -> list[dict]:
    parser = Entries()
    parser.feed(html)
    return parser.items


def test_flagged_images_come_first_in_the_lists_order_then_the_rest_by_falling_doubt(page):
    order = [
        (c["data-path"], c["data-true"], c["data-pred"], c["class"])
        for c in cards(page.read_text())
    ]
    assert order == [
        ("leopard/leopard_001.jpg", "leopard", "striped", "item flagged"),
        (ODD, "dotted", "leopard", "item flagged"),
        ("striped/striped_002.jpg", "striped", "dotted", "item flagged"),  # the group's label
        # not flagged: by 1 - p(given), suggesting the most probable other class
        ("dotted/dotted_001.jpg", "dotted", "leopard", "item unflagged"),  # 0.50
        ("leopard/leopard_000.jpg", "leopard", "striped", "item unflagged"),  # 0.40
        ("striped/striped_001.jpg", "striped", "dotted", "item unflagged"),  # 0.35
        ("leopard/leopard_002.jpg", "leopard", "dotted", "item unflagged"),  # 0.30
        ("dotted/dotted_002.jpg", "dotted", "leopard", "item unflagged"),  # 0.20
        ("dotted/dotted_000.jpg", "dotted", "leopard", "item unflagged"),  # 0.10
        ("striped/striped_000.jpg", "striped", "leopard", "item unflagged"),  # 0.05
    ]
    text = page.read_text()
    assert (
        "10 images, 3 flagged as label issues (2 out of fold, 1 near-duplicate conflicts)." in text
    )
    assert DUPLICATE in text and text.count(">not flagged</div>") == 7
    assert len(re.findall('class="bar[" ]', text)) == 10 * 3  # a bar per class (three classes)
    assert 'id="skipped"' not in text


def test_the_page_keeps_the_most_doubtful_when_capped_and_says_how_many_are_left_out(
    dataset, tmp_path, monkeypatch
):
    monkeypatch.setattr(label_issues_page, "MAX_ENTRIES", 5)
    page = write_page(dataset, tmp_path, issues())
    assert [c["data-path"] for c in cards(page.read_text())][3:] == [
        "dotted/dotted_001.jpg",
        "leopard/leopard_000.jpg",
    ]
    assert "The 5 least doubtful unflagged ones are left out." in page.read_text()


def test_a_skipped_search_is_said_on_the_page(dataset, tmp_path):
    why = "the out-of-fold scores carry no evidence: the margins carry no signal"
    page = write_page(dataset, tmp_path, issues(skipped=why, rows=ROWS[2:]))
    text = page.read_text()
    assert "1 flagged as label issues (0 out of fold, 1 near-duplicate conflicts)" in text
    assert f'id="skipped">Nothing was flagged out of fold: {why}</strong>' in text


def test_text_is_escaped_and_the_page_is_self_contained(dataset, tmp_path):
    page = write_page(dataset, tmp_path, issues(), title="<b>cats & dogs</b>")
    text = page.read_text()
    assert "<b>cats" not in text and "<title>&lt;b&gt;cats &amp; dogs&lt;/b&gt;</title>" in text
    assert "say &quot;hi&quot; &amp; bye.jpg" in text and 'say "hi"' not in text
    parser = Entries()
    parser.feed(text)
    assert parser.items[1]["data-path"] == ODD  # the parser unescapes it back
    assert len(parser.resources) == 10 and all(
        r.startswith("data:image/jpeg;base64,") for r in parser.resources
    )
    assert parser.scripts == 1 and "<link" not in text and "http" not in text


def shown(dom: str) -> list[str]:
    return [c["data-path"] for c in cards(dom) if "hidden" not in c]


@needs_chromium
def test_only_the_flagged_are_on_view_at_first_and_the_filters_follow_the_address(page, tmp_path):
    result = chromium("--dump-dom", page.as_uri(), cwd=tmp_path)
    assert 'id="count">showing 3 of 10 images<' in result.stdout, result.stderr[-2000:]
    assert shown(result.stdout) == [p for p, *_ in ROWS]
    result = chromium("--dump-dom", page.as_uri() + "#show=all&split=train", cwd=tmp_path)
    assert 'id="count">showing 5 of 10 images<' in result.stdout, result.stderr[-2000:]
    view = "#show=unflagged&given=dotted&suggested=leopard&sort=path"
    result = chromium("--dump-dom", page.as_uri() + view, cwd=tmp_path)
    assert shown(result.stdout) == [
        "dotted/dotted_000.jpg",
        "dotted/dotted_001.jpg",
        "dotted/dotted_002.jpg",
    ], result.stderr[-2000:]


@needs_chromium
def test_ticked_issues_export_as_a_csv_relabel_accepts_inside_a_sandboxed_frame(
    page, dataset, tmp_path
):
    """As the MLflow UI shows it (see the results page's test): the user ticks the three
    flagged images, keeps two suggestions and sets the third aside."""
    exported, result = exported_in_sandboxed_frame(
        page,
        "const ticks = document.querySelectorAll('.tick');"
        " for (const i of [0, 1, 2]) ticks[i].click();"
        " document.querySelectorAll('.item select')[2].value = '-';",
        tmp_path,
    )
    assert exported.splitlines() == [
        "path,new_label",
        "leopard/leopard_001.jpg,striped",
        '"dotted/say ""hi"" & bye.jpg",leopard',
        "striped/striped_002.jpg,-",
    ], result.stderr[-2000:]
    moves = tmp_path / "relabel.csv"
    moves.write_text(exported, encoding="utf-8")
    assert read_moves(moves, dataset[0]) == (
        [
            Move(2, "leopard/leopard_001.jpg", "striped/leopard_001.jpg"),
            Move(3, ODD, 'leopard/say "hi" & bye.jpg'),
            Move(4, "striped/striped_002.jpg", "-/striped/striped_002.jpg"),
        ],
        [],
    )
