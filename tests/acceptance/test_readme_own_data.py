"""The README's commands for a user's own images: a folder of them, an image search, the
original's URL list downloaded, de-duplicated, trained on and relabelled (see test_readme.py
for how commands are taken from the README and shrunk)."""

from pathlib import Path

import pytest

from tests.acceptance.claims import (
    DEDUP,
    DOWNLOAD,
    LABEL_ISSUES,
    OWN_FOLDER,
    QUICK_LOOK,
    RELABEL_APPLY,
    RELABEL_SHOW,
    SEARCH,
    TRAIN_DOWNLOADED,
)
from tests.acceptance.conftest import command, ok, run_id_of, shrunk, store, texture_jpeg


def test_own_folder_of_images_with_a_bigger_model(workspace):
    result = ok(workspace.run(shrunk(command(OWN_FOLDER))))
    assert "finished: svm, resnet50" in result.stdout


def test_own_folder_quick_look(workspace):
    result = ok(workspace.run(shrunk(command(QUICK_LOOK))))
    assert "3 classes" in result.stdout


def test_search_as_written_says_in_one_line_that_the_service_cannot_be_reached(workspace):
    """No internet here: the command must stop with one line naming the service, and write
    nothing. (Against a fake Openverse it is tests/test_search_walkthrough.py's first step.)"""
    result = workspace.run(command(SEARCH), 120)
    if result.returncode == 0:  # a machine with the internet: a real list was written
        assert (workspace.folder / "fashion_urls.tsv").is_file()
        return
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: cannot reach openverse") and "nothing was written" in line
    assert not (workspace.folder / "fashion_urls.tsv").exists()


@pytest.fixture(scope="session")
def downloaded(workspace, image_host):
    """The URL list in the original's format, its images on a loopback host, downloaded."""
    lines = []
    for i, label in enumerate(["dotted", "leopard", "striped"] * 8):
        path = f"/{label}/{i}.jpg"
        jpeg = texture_jpeg(workspace.folder / "served" / path.lstrip("/"), label, 300 + i)
        image_host.images[path] = jpeg.read_bytes()
        lines.append(f"{label}\t{image_host.base}{path}")
    lines.append(f"striped\t{image_host.base}/gone.jpg")  # a dead link, as in the original
    (workspace.folder / "fashionTextureUrls.tsv").write_text("\n".join(lines) + "\n")
    return ok(workspace.run(command(DOWNLOAD)))


def test_download_fetches_the_list_and_reports_failures(workspace, downloaded):
    root = workspace.folder / "data" / "images" / "fashionTexture"
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["dotted", "leopard", "striped"]
    assert len(list(root.glob("*/*.jpg"))) == 24
    assert "404" in downloaded.stdout + downloaded.stderr


def test_dedup_reports_on_the_downloaded_set(workspace, downloaded):
    ok(workspace.run(command(DEDUP)))


@pytest.fixture(scope="session")
def fashion_run(workspace, downloaded):
    return run_id_of(ok(workspace.run(shrunk(command(TRAIN_DOWNLOADED)))).stdout)


def test_train_on_the_downloaded_dataset(workspace, fashion_run):
    assert store(workspace).get_run(fashion_run).info.status == "FINISHED"


def test_relabel_shows_then_moves(workspace, fashion_run):
    root = workspace.folder / "data" / "images" / "fashionTexture"
    moved = sorted((root / "dotted").glob("*.jpg"))[0].relative_to(root)
    (workspace.folder / "relabel.csv").write_text(f"path,new_label\n{moved},striped\n")
    shown = ok(workspace.run(command(RELABEL_SHOW)))
    assert (root / moved).exists() and "striped" in shown.stdout
    ok(workspace.run(command(RELABEL_APPLY)))
    assert not (root / moved).exists() and (root / "striped" / moved.name).exists()


def test_label_issues_on_the_downloaded_dataset_says_where_its_list_is(workspace, downloaded):
    result = ok(workspace.run(shrunk(command(LABEL_ISSUES))))
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("label issues: ") and "; list: " in last, last
    listed = Path(last.split("; list: ", 1)[1])
    header = listed.read_text().splitlines()[0]
    assert header == "path,given_label,suggested_label,score,split,reason"
    assert (listed.parent / "label_issues.html").is_file()
