"""The README's sweeps that stand alone: the SVM over backbones, a plain Hydra grid, a range
and plain values on the command line (see test_readme.py for how commands are taken from
the README and shrunk; the refinement sweep whose best trial is registered is there)."""

import re

from tests.acceptance.claims import (
    GRID,
    SWEEP_AUTO,
    SWEEP_BUDGET,
    SWEEP_FIXED,
    SWEEP_RANGE,
    SWEEP_SVM,
)
from tests.acceptance.conftest import TRIALS, command, ok, shrunk, store


def test_svm_sweep_over_backbones(workspace):
    result = ok(workspace.run(shrunk(command(SWEEP_SVM))))
    assert f"study svm: {TRIALS} complete" in result.stdout + result.stderr


def test_plain_hydra_grid(workspace):
    result = ok(workspace.run(shrunk(command(GRID))))
    assert result.stdout.count(" finished: svm") == 6


def test_a_range_on_the_command_line_replaces_the_configs(workspace):
    result = ok(workspace.run(shrunk(command(SWEEP_RANGE))))
    output = result.stdout + result.stderr
    lines = re.findall(r"^trial \d+: .*=.*$", output, re.M)
    drawn = [float(re.search(r"classifier\.lr=([\d.e-]+)", line).group(1)) for line in lines]
    assert len(drawn) == TRIALS and all(0.001 <= v <= 0.01 for v in drawn), drawn


def test_plain_values_in_a_sweep_fix_those_parameters(workspace):
    result = ok(workspace.run(shrunk(command(SWEEP_FIXED))))
    output = result.stdout + result.stderr
    client = store(workspace)
    ids = re.findall(r"^run (\w{32}) started", result.stdout, re.M)
    assert len(ids) == TRIALS
    for run_id in ids:
        params = client.get_run(run_id).data.params
        assert params["model.name"] == "resnet18" and params["classifier.epochs"] == "1"
    trial_lines = re.findall(r"^trial \d+: .*=.*$", output, re.M)
    assert len(trial_lines) == TRIALS
    for line in trial_lines:
        assert " model=" not in line and "classifier.epochs=" not in line, line
    assert "every trial runs with:" in output


def test_a_budgeted_sweep_ends_within_its_budget_and_says_how_much_it_spent(workspace):
    result = ok(workspace.run(shrunk(command(SWEEP_BUDGET))))
    (line,) = re.findall(r"^budget 30s: (\d+)s spent \((\d+)%\)", result.stdout, re.M)
    assert int(line[0]) <= 32, line  # 30 s and 5 %, rounded to the second
    assert "study half_an_hour: " in result.stdout


def test_sweep_auto_runs_the_svms_first_within_its_budget_and_registers_a_champion(workspace):
    result = ok(workspace.run(shrunk(command(SWEEP_AUTO)), 600))
    output = result.stdout + result.stderr
    lines = re.findall(r"^trial (\d+): classifier=(\w+), model=(\w+)", output, re.M)
    assert [mode for _, mode, _ in lines[:6]] == ["svm"] * 6, lines
    assert len({model for _, _, model in lines[:6]}) == 3
    # how far the winner is ahead of what `python -m src.run` alone trains
    assert re.search(
        r"^the default configuration \(classifier=svm, model=resnet18, resolution=224, .*"
        r"is trial \d+: [\d.]+; the best is \+[\d.]+ on it$",
        result.stdout,
        re.M,
    ), result.stdout[-3000:]
    (spent,) = re.findall(r"^budget 1m40s: (?:(\d+)m)?(\d+)s spent", result.stdout, re.M)
    assert 60 * int(spent[0] or 0) + int(spent[1]) <= 105, spent  # within 5 % of 100 s
    (version,) = re.findall(r"models:/([\w-]+)@champion \(version (\d+)\)", result.stdout)
    alias = store(workspace).get_model_version_by_alias(version[0], "champion")
    assert str(alias.version) == version[1]
    images = workspace.folder / "data" / "synthetic"  # the default set the sweep trained on
    out = workspace.folder / "champion_predictions.csv"
    ok(
        workspace.run(
            f"python -m src.predict model=models:/{version[0]}@champion input={images} output={out}"
        )
    )
    assert out.read_text().splitlines()[0].startswith("path,label,score")
