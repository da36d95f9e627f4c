"""The benchmark harness runs and reports; the measurements themselves are not tests."""

import json
import subprocess
import sys

import pytest
import torch

from benchmarks import suite
from benchmarks.common import markdown_table
from tests.conftest import ROOT

TINY = {
    "featurise_images": 6,
    "featurise_batch": 3,
    "naive_images": 2,
    "data_images": 6,
    "large_photos": 1,
    "cache_images": 6,
    "refine_images": 9,
    "refine_val": 3,
    "refine_epochs": 1,
    "train_steps": 1,
}


def test_markdown_tables_have_one_column_per_key_and_readable_numbers():
    table = markdown_table([{"model": "resnet18", "img/s": 1234.5, "ratio": 0.8567, "ok": True}])
    assert table.splitlines() == [
        "| model | img/s | ratio | ok |",
        "|---|---|---|---|",
        "| resnet18 | 1,234 | 0.857 | yes |",
    ]


def test_in_process_benchmarks_report_their_ratios(monkeypatch, tmp_path):
    monkeypatch.setenv("IMGSWEEP_BENCH_DIR", str(tmp_path))
    monkeypatch.setattr("benchmarks.common.BENCH_DIR", tmp_path)
    monkeypatch.setitem(suite.SIZES, "tiny", TINY)
    monkeypatch.setattr(suite, "SIZE", 32)
    results = suite.run(
        ["featurisation", "data", "cache", "refinement"], "tiny", torch.device("cpu")
    )
    bench = results["benchmarks"]
    assert [r["model"] for r in bench["featurisation"]["rows"]] == ["resnet18", "resnet50"]
    assert all(r["end to end / forward"] > 0 for r in bench["featurisation"]["rows"])
    assert bench["cache"]["rows"][0]["speed-up"] > 1
    assert any("resnet50" in r["step"] for r in bench["data"]["rows"])  # vs the model's rate
    assert len([r for r in bench["refinement"]["rows"] if "refine epoch" in r["measurement"]]) == 1
    text = suite.markdown(results)
    assert "Machine:" in text and "### 3. Feature cache" in text
    json.dumps(results)  # all of it can be written


@pytest.mark.slow
def test_the_whole_quick_suite_runs(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=2400,  # about 7 minutes on 2 quiet cores; a loaded machine takes far longer
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert set(json.loads(out.read_text())["benchmarks"]) == set(suite.BENCHMARKS)
    assert "### 7. Scoring service latency" in done.stdout


def test_the_precision_benchmark_reports_a_ratio_per_part(monkeypatch, tmp_path, capsys):
    from benchmarks import precision

    monkeypatch.setattr("benchmarks.common.BENCH_DIR", tmp_path)
    monkeypatch.setattr(precision, "SIZE", 32)
    precision.main(["--quick", "--rounds", "1", "--out", str(tmp_path)])
    rows = json.loads((tmp_path / "precision.json").read_text())["rows"]
    assert [r["measurement"].split(",")[0] for r in rows] == [
        "resnet18 forward",
        "resnet18 featurisation end to end",
        "resnet18 refinement epoch",
        "served model",
    ]
    assert all(r["ratio (median)"] > 0 for r in rows)
    assert rows[1]["parity"].startswith("cosine 0.9")
    assert "| measurement | unit | fp32 | bf16 (auto) |" in capsys.readouterr().out
