"""The budget benchmark: the budget, the timelines, the overrun, the table and verdicts,
a failed child, and one quick run end to end."""

import json
from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest
from optuna.trial import TrialState

from benchmarks import budget
from tests.benchmarks.quick import run_quick

LAUNCH = datetime(2026, 12, 8, 12, 0, 0)


def trial(number, state, value=None, after=None, **attrs):
    """A finished study trial as the timeline reads it, ending `after` seconds from LAUNCH."""
    end = None if after is None else LAUNCH + timedelta(seconds=after)
    return SimpleNamespace(
        number=number, state=state, value=value, datetime_complete=end, user_attrs=attrs
    )


def test_the_budget_is_the_default_dnn_runs_time_rounded_up_or_the_time_given():
    assert budget.budget_seconds("dnn", 72.01) == 73
    assert budget.budget_seconds("dnn", 73.0) == 73
    assert budget.budget_seconds("90s", 72.01) == 90
    assert budget.budget_seconds("3m", None) == 180
    with pytest.raises(RuntimeError, match="default dnn run failed"):
        budget.budget_seconds("dnn", None)


def test_a_budget_that_is_neither_dnn_nor_a_time_is_refused_before_anything_runs(capsys):
    with pytest.raises(SystemExit):
        budget.main(["--budget", "soon"])
    assert "--budget" in capsys.readouterr().err


def test_the_sweeps_get_the_budget_in_seconds_and_the_seed_and_the_defaults_neither():
    keys = budget.keys(budget.Path("/set"), "textures", 2, budget.Path("/s"), ["x=1"])
    assert keys[-1] == "x=1" and "seed=2" in keys and "paths.data_dir=/s/data" in keys
    default = budget.command("default dnn", keys, 2, None)
    assert default[3:5] == ["classifier=dnn", "dataset=folder"]
    sweep = budget.command("refine_dnn", keys, 2, 73)
    assert sweep[3:8] == [
        "-m",
        "sweep=refine_dnn",
        "hydra.sweeper.n_trials=null",
        "hydra.sweeper.budget=73s",
        "hydra.sweeper.sampler.seed=2",
    ]
    assert "hydra.sweeper.budget=90s" in budget.command("auto", keys, 0, 90.0)


def test_the_timeline_keeps_the_best_complete_value_so_far_in_the_order_trials_ended():
    trials = [
        trial(3, TrialState.COMPLETE, 0.6, after=40),
        trial(0, TrialState.PRUNED, 0.9, after=10),  # a pruned trial's value is no result
        trial(1, TrialState.COMPLETE, 0.7, after=20),
        trial(2, TrialState.COMPLETE, 0.5, after=30),
        trial(4, TrialState.FAIL, after=45, not_run=True),  # told FAIL, never run
        trial(5, TrialState.PRUNED, after=50, not_run=True),
        trial(6, TrialState.RUNNING),
        trial(7, TrialState.WAITING),
    ]
    points = budget.timeline(trials, LAUNCH.timestamp())
    assert [p["trial"] for p in points] == [0, 1, 2, 3]
    assert [p["seconds"] for p in points] == [10, 20, 30, 40]
    assert [p["best"] for p in points] == [None, 0.7, 0.7, 0.7]
    assert [p["state"] for p in points] == ["PRUNED", "COMPLETE", "COMPLETE", "COMPLETE"]


def test_the_overrun_is_the_share_past_the_budget_and_the_sweeps_own_line_is_read():
    assert budget.overrun(110, 100) == pytest.approx(0.1)
    assert budget.overrun(45, 60) == pytest.approx(-0.25)
    stdout = "trial 3: 0.7\nbudget 2m37s: 2m40s spent (102%), 0s left\n"
    assert budget.spent_line(stdout) == {
        "budget_line": "budget 2m37s: 2m40s spent (102%), 0s left",
        "spent_share": 1.02,
    }
    assert budget.spent_line("Traceback ...") == {"budget_line": None, "spent_share": None}


def runs_of(dataset, seed, accuracies, overruns=(None, None, 0.05, 0.2)):
    return [
        {
            "dataset": dataset,
            "seed": seed,
            "contender": c,
            "seconds": 100.0,
            "test_class_avg_accuracy": a,
            **(
                {} if o is None else {"overrun": o, "budget_seconds": 80, "trials": {"COMPLETE": 2}}
            ),
        }
        for c, a, o in zip(budget.CONTENDERS, accuracies, overruns, strict=True)
    ]


def test_the_table_means_over_seeds_and_the_verdict_names_the_best_contender():
    runs = runs_of("photos", 0, [0.7, 0.8, 0.9, 0.85]) + runs_of("photos", 1, [0.7, 0.8, 0.7, 0.95])
    runs += runs_of("textures", 0, [0.5, 0.6, 0.7, 0.7], (None, None, 0.1, -0.3))
    runs[-1]["trials"] = {"PRUNED": 3}
    rows = {(r["dataset"], r["contender"]): r for r in budget.table(runs)}
    assert rows["photos", "refine_dnn"]["test class-avg acc"] == "0.800 (0.700-0.900)"
    assert rows["photos", "auto"]["test class-avg acc"] == "0.900 (0.850-0.950)"
    assert rows["photos", "auto"]["max overrun"] == "+20%"
    assert rows["photos", "default"]["max overrun"] == "n/a"
    assert rows["photos", "default"]["budget s"] == "n/a"
    assert rows["photos", "auto"]["trials complete"] == "2.0"
    assert rows["textures", "auto"]["trials complete"] == "0.0"
    assert rows["textures", "auto"]["trials pruned"] == "3.0"
    photos, textures = budget.verdicts(runs)
    assert photos.startswith("photos: best mean test class-avg accuracy 0.900: auto;")
    assert "auto is the best;" in photos and "auto's max overrun +20%" in photos
    assert "0.700: refine_dnn, auto; auto is the best (tied)" in textures
    assert "auto's max overrun -30%" in textures


def test_the_verdict_says_when_auto_is_not_the_best_or_has_no_result():
    runs = runs_of("scientific", 0, [0.9, 0.8, 0.7, 0.6])
    (line,) = budget.verdicts(runs)
    assert "0.900: default;" in line and "auto is not (0.600)" in line
    runs[-1]["error"] = "RuntimeError: ..."
    (line,) = budget.verdicts(runs)
    assert "auto has no result" in line and "auto's overrun n/a" in line
    (all_row,) = [r for r in budget.table(runs) if r["contender"] == "auto"]
    assert all_row["seeds"] == "0 (1 failed)" and all_row["test class-avg acc"] == "n/a"


def test_a_failed_child_run_is_recorded_and_the_benchmark_goes_on(tmp_path, monkeypatch, capsys):
    """Children stood in for: seed 0's default dnn run fails (so its sweeps have no budget),
    seed 1's refine_dnn sweep fails after its study recorded a trial."""
    calls = []

    def fake_default(contender, folder, name, seed, scratch, extra):
        calls.append((contender, seed, None))
        if contender == "default dnn" and seed == 0:
            raise RuntimeError("src.run failed:\nTraceback ... the dnn's tail")
        seconds = 61.2 if contender == "default dnn" else 20.0
        return {"seconds": seconds, "test_class_avg_accuracy": 0.8, "val_class_avg_accuracy": 0.7}

    def fake_sweep(contender, folder, name, seed, scratch, extra, seconds):
        calls.append((contender, seed, seconds))
        assert scratch.name == f"{name}-seed{seed}-{contender}"
        timeline = [{"trial": 0, "state": "COMPLETE", "seconds": 30.0, "best": 0.75}]
        if contender == "refine_dnn":
            partial = {"seconds": 70.0, "trials": {"COMPLETE": 1}, "timeline": timeline}
            raise budget.ChildFailed("the sweep failed:\nValueError: the sweep's tail", partial)
        record = {"seconds": 64.0, "budget_seconds": seconds, "overrun": 64.0 / seconds - 1}
        return {
            **record,
            "trials": {"COMPLETE": 1},
            "timeline": timeline,
            "test_class_avg_accuracy": 0.9,
        }

    monkeypatch.setattr(budget, "run_default", fake_default)
    monkeypatch.setattr(budget, "run_sweep", fake_sweep)
    monkeypatch.setattr(budget, "BENCH_DIR", tmp_path)
    out = tmp_path / "out.json"
    budget.main(["--datasets", "textures", "--seeds", "2", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "the dnn's tail" in printed and "the sweep's tail" in printed  # above the bar
    assert calls == [
        ("default", 0, None),
        ("default dnn", 0, None),
        ("default", 1, None),
        ("default dnn", 1, None),
        ("refine_dnn", 1, 62),
        ("auto", 1, 62),
    ]
    results = json.loads(out.read_text())
    runs = results["runs"]
    assert [(r["seed"], r["contender"]) for r in runs] == [
        (s, c) for s in (0, 1) for c in budget.CONTENDERS
    ]
    assert ["error" in r for r in runs] == [False, True, True, True, False, False, True, False]
    assert "no budget: the default dnn run failed" in runs[2]["error"]
    assert runs[6]["timeline"] and "the sweep's tail" in runs[6]["error"]  # its study kept
    assert runs[7]["budget_seconds"] == 62 and runs[7]["test_class_avg_accuracy"] == 0.9
    rows = {r["contender"]: r for r in results["tables"]["per dataset"]}
    assert rows["refine_dnn"]["seeds"] == "0 (2 failed)" and rows["auto"]["seeds"] == "1 (1 failed)"
    assert results["settings"]["budget"] == "dnn" and results["settings"]["seeds"] == [0, 1]
    assert out.with_suffix(".png").stat().st_size > 0


@pytest.mark.slow  # four imgsweep commands, two of them 45 s sweeps: about 3 minutes on 2 cores
def test_the_quick_budget_benchmark_runs_all_four_contenders(tmp_path):
    out = tmp_path / "budget.json"
    done = run_quick(tmp_path, "benchmarks.budget", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| max overrun |" in done.stdout and "textures: best mean test" in done.stdout
    results = json.loads(out.read_text())
    assert results["settings"]["seeds"] == [0] and results["settings"]["budget"] == "45s"
    assert "model.weights=none" in results["settings"]["keys"]
    runs = results["runs"]
    assert [r["contender"] for r in runs] == list(budget.CONTENDERS)
    for r in runs:
        assert "error" not in r, r["error"]
        assert r["dataset"] == "textures" and 0 <= r["test_class_avg_accuracy"] <= 1
        assert 0 <= r["val_class_avg_accuracy"] <= 1 and r["seconds"] > 0
    for r in runs[2:]:
        assert r["budget_seconds"] == 45
        assert r["overrun"] == pytest.approx(r["seconds"] / 45 - 1, abs=0.01)  # kept to 3 digits
        assert r["budget_line"].startswith("budget 45s: ") and r["spent_share"] > 0
        assert r["trials"]["COMPLETE"] >= 1 and r["timeline"]
        assert all(0 <= p["best"] <= 1 for p in r["timeline"] if p["best"] is not None)
    assert set(runs[3]["winner"]) == {"classifier", "model", "resolution"}
    assert len(results["tables"]["per dataset"]) == 4 and len(results["verdicts"]) == 1
    assert out.with_suffix(".png").stat().st_size > 0
