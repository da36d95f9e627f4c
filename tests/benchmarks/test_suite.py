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
    assert "### 8. bf16 against fp32" in done.stdout and "native bf16: " in done.stdout


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
        "resnet18 refinement",
    ]
    assert all(r["ratio (median)"] > 0 for r in rows)
    # `auto` is fp32 on a CPU without native bf16, so the parity may be exactly 1
    assert rows[1]["parity"].startswith("cosine ")
    assert 0.999 <= float(rows[1]["parity"].split()[1]) <= 1.0 + 1e-6
    assert rows[4]["unit"] == "accuracy" and rows[4]["parity"].startswith("mean gap ")
    assert "| measurement | unit | fp32 | bf16 (auto) |" in capsys.readouterr().out


def test_pruner_overrides_turn_the_shipped_pruner_into_the_one_asked_for():
    from omegaconf import OmegaConf

    from benchmarks import sweeps

    shipped = dict(OmegaConf.load(ROOT / "conf/sweep/refine_dnn.yaml").hydra.sweeper.pruner)
    assert sweeps.pruner_overrides(None) == []
    for spec in sweeps.PRUNERS.values():
        if spec is None:
            continue
        pruner = dict(shipped)
        for override in sweeps.pruner_overrides(spec):  # applied as Hydra reads ~, + and =
            key, _, value = override.lstrip("~+").partition("=")
            key = key.removeprefix("hydra.sweeper.pruner.")
            if override.startswith("~"):
                del pruner[key]
            else:
                assert (key in pruner) != override.startswith("+"), override
                pruner[key] = value
        assert pruner == {k: sweeps.hydra_value(v) for k, v in spec.items()}


def test_the_sweep_summary_compares_each_pruner_with_the_unpruned_sweep_of_its_seed():
    from benchmarks.sweeps import summary

    def row(pruner, seed, spent, best):
        return {
            "pruner": pruner,
            "seed": seed,
            "trials": 4,
            "pruned": 0,
            "trial-epochs": spent,
            "of at most": 24,
            "wall s": 1.0,
            "best val class-avg accuracy": best,
        }

    rows = [
        row("none", 0, 24, 0.5),
        row("none", 1, 24, 0.6),
        row("a", 0, 12, 0.5),
        row("a", 1, 6, 0.7),
        row("b", 0, 10, 0.4),
    ]
    totals = {t["pruner"]: t for t in summary(rows)}
    assert totals["none: all seeds"]["vs unpruned"] == 1.0
    assert totals["a: all seeds"]["vs unpruned"] == 18 / 48
    assert totals["a: all seeds"]["best equals unpruned's"] is True
    assert totals["b: all seeds"]["vs unpruned"] == 10 / 24
    assert totals["b: all seeds"]["best equals unpruned's"] is False
    alone = summary([row("c", 0, 10, 0.4)])[0]  # no unpruned sweep to compare with
    assert alone["vs unpruned"] is None and alone["best equals unpruned's"] is None
