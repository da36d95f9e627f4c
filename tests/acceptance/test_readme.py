"""Every command block of README.md, run as written, in the order a user meets them.

Each test takes its command out of the README by the text it starts with (`command`), so
an edited command is what runs, and a README command that no test claims (tests/acceptance/
claims.py) fails `test_every_readme_command_is_run_or_its_skip_is_explained`. Commands are
shrunk only by appending data, epoch, trial and resolution limits and `model.weights=none`
(`shrunk`). Placeholders (`<run id>`, `<study name>`) become the ids the earlier commands
printed.

This file holds the commands that build on one another in one store: the quick start's run
is looked at in the UI, registered, served, used for prediction and exported; the sweep's
best trial is registered. The other commands stand alone, in the files beside this one, so
that `pytest -n 2 --dist loadfile` runs them beside these.
"""

import json
import re

import pytest
from mlflow.tracking import MlflowClient

from tests.acceptance import readme
from tests.acceptance.claims import (
    CLAIMED,
    CLIENT,
    CURL,
    EXPORT,
    INSTALL,
    ONNX_EXAMPLE,
    PREDICT,
    QUICK_START,
    REGISTER_RUN,
    REGISTER_STUDY,
    SERVE,
    SERVING_BENCHMARK,
    SKIPPED,
    SWEEP,
    SWEEP_MORE,
    TESTS,
    UI,
)
from tests.acceptance.conftest import TRIALS, command, ok, run_id_of, shrunk, stop, store, wait_for
from tests.conftest import ROOT


def test_every_readme_command_is_run_or_its_skip_is_explained():
    unclaimed = [c for c in readme.commands() if claimant(c) is None]
    assert not unclaimed, f"README commands with no acceptance test: {unclaimed}"
    for text in CLAIMED:
        command(text)  # each claimed command is in the README, once


def claimant(readme_command: str) -> str | None:
    """The claim or skip that covers a README command: the longest text it starts with."""
    texts = [t for t in [*CLAIMED, *SKIPPED] if readme_command.startswith(t)]
    return max(texts, key=len) if texts else None


def test_ci_installs_exactly_as_the_readme_says():
    ci = (ROOT / ".ci" / "run").read_text()
    assert command(TESTS) in ci


@pytest.fixture(scope="session")
def quick_start(workspace):
    """The quick start's run (its install is what .ci/run did): the default svm job."""
    typed = command(QUICK_START).removeprefix(f"{INSTALL} && ")
    result = ok(workspace.run(shrunk(typed)))
    return run_id_of(result.stdout), result


def test_quick_start_trains_evaluates_and_records_a_run(workspace, quick_start):
    run_id, result = quick_start
    run = store(workspace).get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params["classifier.name"] == "svm"
    assert "test/class_avg_accuracy" in run.data.metrics
    assert f"#/experiments/{run.info.experiment_id}/runs/{run_id}" in result.stdout


def test_mlflow_ui_shows_the_runs(workspace, quick_start):
    ui = workspace.start(command(UI), "ui.log")
    try:
        wait_for("http://127.0.0.1:5000/health", ui)
        client = MlflowClient("http://127.0.0.1:5000")
        assert client.get_run(quick_start[0]).info.status == "FINISHED"
    finally:
        stop(ui)


@pytest.fixture(scope="session")
def refine_sweep(workspace):
    return ok(workspace.run(shrunk(command(SWEEP))))


def trials_done(output: str, study: str) -> int:
    """COMPLETE and PRUNED trials, both of which count towards n_trials, from the summary."""
    counts = re.search(rf"^study {study}: (.*)$", output, re.M).group(1)
    return sum(
        int(n) for n, state in re.findall(r"(\d+) (\w+)", counts) if state in ("complete", "pruned")
    )


def test_sweep_runs_its_trials_and_says_how_to_reproduce_the_best(refine_sweep):
    output = refine_sweep.stdout + refine_sweep.stderr
    assert trials_done(output, "refine_dnn") == TRIALS
    reproduce = re.search(r"reproduce it: (python -m src\.run .*)", output).group(1)
    assert reproduce.count("classifier.epochs=") == 1  # the fixed value, not a drawn one too


def test_a_larger_total_runs_the_missing_trials(workspace, refine_sweep):
    result = ok(workspace.run(shrunk(command(SWEEP_MORE))))
    output = result.stdout + result.stderr
    assert trials_done(output, "refine_dnn") == TRIALS + 1  # the pruner may stop one


@pytest.fixture(scope="session")
def registered(workspace, quick_start):
    return ok(workspace.run(command(REGISTER_RUN).replace("<run id>", quick_start[0])))


def test_register_a_run_under_an_alias(workspace, registered):
    version = store(workspace).get_model_version_by_alias("fashion-texture", "champion")
    assert version.run_id


def test_register_a_sweeps_best_trial(workspace, refine_sweep, registered):
    ok(workspace.run(command(REGISTER_STUDY).replace("<study name>", "refine_dnn")))


def test_serve_answers_the_readmes_curl_and_python_client(workspace, registered):
    server = workspace.start(command(SERVE), "serve.log")
    try:
        wait_for("http://127.0.0.1:5001/health", server, 300)
        answer = ok(workspace.run(command(CURL)))
        (prediction,) = json.loads(answer.stdout)["predictions"]
        assert prediction["label"] in ("dotted", "leopard", "striped")
        assert abs(sum(prediction[c] for c in ("dotted", "leopard", "striped")) - 1) < 1e-4
        printed = ok(workspace.python(command(CLIENT))).stdout.strip().splitlines()
        assert len(printed) == 5
        assert all(re.fullmatch(r"\w+ \(score [\d.]+\) in \d+ ms", line) for line in printed)
    finally:
        stop(server)


def test_predict_a_folder(workspace, registered):
    ok(workspace.run(command(PREDICT)))
    rows = (workspace.folder / "predictions.csv").read_text().splitlines()
    assert rows[0].startswith("path,label,score") and len(rows) == 4


def test_export_to_onnx_and_run_the_readmes_onnxruntime_example(workspace, quick_start):
    ok(workspace.run(command(EXPORT).replace("<run id>", quick_start[0])))
    assert (workspace.folder / "model.onnx").stat().st_size > 1000
    printed = ok(workspace.python(command(ONNX_EXAMPLE))).stdout.strip().splitlines()
    assert [line.split()[0] for line in printed] == ["a.jpg", "b.png"]


@pytest.mark.slow
def test_serving_latency_benchmark(workspace, registered):
    result = ok(workspace.run(command(SERVING_BENCHMARK), 900))
    assert "p50" in result.stdout
