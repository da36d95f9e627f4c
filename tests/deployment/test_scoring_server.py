"""The REST scoring service: `mlflow models serve` on the registered model, as a user runs it.

One real server (a subprocess on a free loopback port) serves `models:/<name>@champion` for
the whole module; every bad request must get a 4xx with a clear message, and the server must
answer the next good request.
"""

import base64
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from PIL import Image

from benchmarks.fuzz import regression_inputs
from benchmarks.serving import measure_serving_latency
from src.deployment.registry import register_run
from src.deployment.scoring_server import scoring_server
from tests.conftest import image_bytes
from tests.deployment.conftest import CLASSES, readme_python_block


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def encoded(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


GOOD = {"dataframe_records": [{"image": b64(image_bytes(size=(64, 48)))}]}


@pytest.fixture(scope="module")
def server(trained):
    client = trained.client
    register_run(client, client.get_run(trained.run_id), "served", "champion")
    with scoring_server("models:/served@champion", tracking_uri=trained.uri) as running:
        yield running


def score(server, body, **kwargs) -> requests.Response:
    return requests.post(f"{server.url}/invocations", json=body, timeout=60, **kwargs)


def test_each_image_gets_a_label_a_score_and_a_probability_per_class(server):
    images = [
        image_bytes("JPEG", size=(640, 480), seed=1),
        image_bytes("PNG", size=(50, 90), mode="RGBA", seed=2),
        image_bytes("WEBP", size=(100, 100), seed=3),
    ]
    response = score(server, {"dataframe_records": [{"image": b64(i)} for i in images]})
    assert response.status_code == 200, response.text
    rows = response.json()["predictions"]
    assert len(rows) == 3
    for row in rows:
        assert set(row) == {"label", "score", *CLASSES}
        assert row["label"] in CLASSES and row["score"] == pytest.approx(row[row["label"]])
        assert row["score"] == max(row[c] for c in CLASSES)
        assert sum(row[c] for c in CLASSES) == pytest.approx(1, abs=1e-5)


def test_the_original_services_column_name_and_the_split_format_work_too(server):
    image = b64(image_bytes(size=(64, 48)))
    original = score(server, {"dataframe_records": [{"image base64 string": image}]})
    split = score(server, {"dataframe_split": {"columns": ["image"], "data": [[image]]}})
    assert original.status_code == split.status_code == 200
    assert original.json() == split.json() == score(server, GOOD).json()


def test_the_readme_client_prints_the_label_and_the_round_trip_time(server, tmp_path):
    image = image_bytes(size=(120, 90), seed=7)
    (tmp_path / "my_image.jpg").write_bytes(image)
    client = readme_python_block('URL = "http://127.0.0.1:5001/invocations"')
    client = client.replace("http://127.0.0.1:5001", server.url)
    result = subprocess.run(
        [sys.executable, "-c", client], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]
    expected = score(server, {"dataframe_records": [{"image": b64(image)}]}).json()
    label = expected["predictions"][0]["label"]
    lines = result.stdout.splitlines()
    assert len(lines) == 5
    for line in lines:
        assert re.fullmatch(rf"{label} \(score \d\.\d\d\) in \d+ ms", line), line


BAD_REQUESTS = {
    "invalid base64": ({"image": "not base64 at all!"}, "row 0: the image is not valid base64"),
    "not an image": ({"image": b64(b"%PDF-1.7 a document")}, "not an image (unrecognised format)"),
    "empty image": ({"image": ""}, "row 0: the image is empty"),
    "null image": ({"image": None}, "row 0: no image (null)"),
    "truncated image": (
        {"image": b64(image_bytes(size=(300, 300))[:400])},
        "corrupt or truncated JPEG data",
    ),
    "missing column": (
        {"picture": b64(image_bytes())},
        "no image column: expected a column named one of ['image', 'image base64 string']",
    ),
    "huge image": (  # 120 megapixels: over the decoder's limit, refused from the header
        {"image": b64(encoded(Image.new("1", (12_000, 10_000))))},
        "12000x10000 is over the 100-megapixel limit",
    ),
}


@pytest.mark.parametrize("record, message", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_a_bad_request_gets_a_4xx_with_a_clear_message_and_the_server_goes_on(
    server, record, message
):
    response = score(server, {"dataframe_records": [record]})
    assert 400 <= response.status_code < 500
    assert message in response.json()["message"]
    assert score(server, GOOD).status_code == 200


@pytest.mark.parametrize("path", regression_inputs(), ids=lambda p: p.name)
def test_a_file_any_decoder_fails_on_gets_a_400_naming_its_problem(server, path):
    # issue 24: the served model raised Pillow's IndexError on the first GIF, not a 400
    response = score(server, {"dataframe_records": [{"image": b64(path.read_bytes())}]})
    assert response.status_code == 400
    assert "row 0: corrupt or truncated " in response.json()["message"]
    assert score(server, GOOD).status_code == 200


def test_a_request_that_is_not_json_gets_a_4xx(server):
    response = requests.post(
        f"{server.url}/invocations",
        data="{not json",
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    assert 400 <= response.status_code < 500 and "JSON" in response.json()["message"]
    assert score(server, GOOD).status_code == 200


def test_a_decompression_bomb_is_refused_without_decoding_it(server):
    # 400 megapixels in ~50 kB: decoded to RGB it would take 1.2 GB
    bomb = encoded(Image.new("1", (20_000, 20_000)))
    assert len(bomb) < 200_000
    before = peak_memory_mb(server.process_group)
    response = score(server, {"dataframe_records": [{"image": b64(bomb)}]})
    assert response.status_code == 400
    assert "decompression bomb" in response.json()["message"]
    if before:  # /proc is there (Linux): the server's peak memory hardly moved
        assert peak_memory_mb(server.process_group) - before < 300
    assert score(server, GOOD).status_code == 200


def peak_memory_mb(process_group: int) -> float:
    """The largest peak resident size (VmHWM) among the processes of a group, in MB."""
    peak = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            group = int(stat.read_text().rsplit(")", 1)[1].split()[2])
            if group != process_group:
                continue
            status = (stat.parent / "status").read_text().splitlines()
            kilobytes = next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))
        except (OSError, ValueError, IndexError, StopIteration):  # gone, or a kernel thread
            continue
        peak = max(peak, kilobytes / 1024)
    return peak


@pytest.mark.slow  # a second server; the benchmark suite runs it at full size
def test_the_latency_benchmark_measures_single_and_batched_calls(trained):
    result = measure_serving_latency(
        f"runs:/{trained.run_id}/model", trained.uri, calls=5, batch_size=4, batches=2
    )
    assert 0 < result["single_image_ms_p50"] <= result["single_image_ms_p95"]
    assert result["batch_size"] == 4 and result["batch_images_per_s"] > 0
