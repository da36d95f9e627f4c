"""The fuzz harness (benchmarks/fuzz.py): the image target replays the whole seed corpus, the
inputs earlier fuzzing found among it, without a finding. The timed run is a benchmark
(`python -m benchmarks.fuzz`, BENCHMARKS.md section 9); the quick suite runs it briefly."""

import subprocess
import sys

from benchmarks.fuzz import SEEDS, regression_inputs, seed_images
from benchmarks.fuzz_targets import REQUEST_KINDS, request_of
from tests.conftest import ROOT


def test_the_image_target_replays_the_seed_corpus_without_a_finding(tmp_path):
    command = [
        sys.executable, "-m", "benchmarks.fuzz_targets", "images", str(tmp_path),
        "-runs=0", f"-artifact_prefix={tmp_path}/", str(SEEDS / "images"),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    inputs = len(seed_images()) + len(regression_inputs())
    assert f"{inputs} files found in {SEEDS / 'images'}" in done.stderr
    assert list(tmp_path.iterdir()) == []  # no crash-, timeout- or oom- file


def test_a_request_input_says_in_its_first_byte_how_the_rest_is_sent():
    image = b"GIF89a..."
    assert request_of(b"\x00{}") == (b"{}", "application/json")
    assert request_of(b"\x01image\nabc\n") == (b"image\nabc\n", "text/csv")
    assert b'"dataframe_records"' in request_of(b"\x02" + image)[0]
    assert b'"image base64 string"' in request_of(b"\x03" + image)[0]
    assert request_of(bytes([len(REQUEST_KINDS)]) + b"{}") == (b"{}", "application/json")
