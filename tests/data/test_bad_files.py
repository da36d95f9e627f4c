"""One bad file never stops a run (issue 24): whatever a decoder raises on one file's bytes is
that file's problem. It is skipped, counted and listed in a run, and refused by the
downloader. The files are the inputs fuzzing found, kept in tests/data/fuzz_corpus/images/;
the scoring server's 400 and src.predict's error rows are tested in tests/deployment/."""

import csv
import functools
import io
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from benchmarks.fuzz import regression_inputs
from src.data.download import download_images
from src.data.loader import ImageDataset
from src.data.prepare import SplitSettings, prepare_dataset
from src.data.presets import augment, load_pixels
from tests.conftest import run_cli, write_dataset

BAD = regression_inputs()
CLASSES = ("a", "b", "c")


def folder_with_bad_files(root: Path) -> dict[str, Path]:
    """Three classes of five real images, and each bad file in one of them; relpath → file."""
    write_dataset(root, dict.fromkeys(CLASSES, 5), size=(40, 30))
    placed = {}
    for i, bad in enumerate(BAD):
        relpath = f"{CLASSES[i % len(CLASSES)]}/{bad.name}"
        shutil.copyfile(bad, root / relpath)
        placed[relpath] = bad
    return placed


def test_the_fuzz_findings_are_all_there():
    assert [p.name for p in BAD] == [
        "cv2-imdecode-error.tif",
        "gif-indexerror-a.gif",
        "gif-indexerror-b.gif",
        "pil-struct-error.gif",
        "tiff-typeerror.tif",
    ]


def test_a_folders_bad_files_are_skipped_with_their_reasons_and_the_rest_is_split(tmp_path):
    placed = folder_with_bad_files(tmp_path / "set")
    data = prepare_dataset(tmp_path / "set", SplitSettings(0.6, 0.2), 0, None, None, 2)
    skipped = dict(data.skipped)
    assert sorted(skipped) == sorted(placed)
    assert all(reason.startswith("corrupt or truncated ") for reason in skipped.values())
    assert len(data.files) == 15 and data.classes == list(CLASSES)


@pytest.mark.parametrize("augmented", [False, True], ids=["load_pixels", "augment"])
def test_a_bad_file_read_by_the_loader_gives_a_blank_image_and_its_reason(augmented):
    # a file that changed after its check: training drops the row, src.predict reports it
    transform = functools.partial(augment if augmented else load_pixels, size=32)
    dataset = ImageDataset(BAD, [0] * len(BAD), transform, 32)
    for index in range(len(BAD)):
        seed = (0, index) if augmented else None
        pixels, reason = dataset.read(index, seed)
        assert reason.startswith("corrupt or truncated ") and not pixels.any()
        assert dataset[(index, seed) if augmented else index][2] == -1  # the row is dropped


def test_the_downloader_refuses_each_bad_file_as_a_corrupt_image(tmp_path):
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(BAD[0].parent))
    handler.log_message = lambda *args: None
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        urls = tmp_path / "urls.tsv"
        base = f"http://127.0.0.1:{httpd.server_address[1]}"
        urls.write_text("".join(f"bad\t{base}/{p.name}\n" for p in BAD))
        summary = download_images(urls, tmp_path / "set", threads=2, retries=0, timeout=10)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert summary.downloaded == [] and summary.failed_by_reason() == {"corrupt image": len(BAD)}
    assert all(f.detail.startswith("corrupt or truncated ") for f in summary.failures)
    assert not (tmp_path / "set" / "bad").exists()


@pytest.mark.slow  # a run
def test_a_run_on_a_folder_with_bad_files_skips_counts_and_lists_them(tmp_path):
    # issue 24: one 64-byte malformed GIF in a class folder made this exit 1 with a traceback
    placed = folder_with_bad_files(tmp_path / "pics")
    result = run_cli("dataset=folder", f"dataset.root={tmp_path / 'pics'}", tmp=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    for relpath in placed:
        assert f"skipped {relpath}: corrupt or truncated " in result.stdout
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.data.params["data.skipped_files"] == str(len(placed))
    listed = client.download_artifacts(run.info.run_id, "data/skipped_files.tsv", str(tmp_path))
    rows = list(csv.DictReader(io.StringIO(Path(listed).read_text()), delimiter="\t"))
    assert sorted(r["path"] for r in rows) == sorted(placed)
    assert all(r["reason"].startswith("corrupt or truncated ") for r in rows)
    assert np.isfinite(run.data.metrics["test/class_avg_accuracy"])
