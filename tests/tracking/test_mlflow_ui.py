"""What a user sees in the MLflow UI after a sweep: a real `mlflow server` on the store two
grid runs wrote, read through its REST API, and the link the run printed opened in
headless Chromium on the training view's runs table."""

import html
import re

import pytest
import requests

from tests.conftest import run_cli, start_mlflow_server, stop_mlflow_server
from tests.evaluation.test_results_page import chromium, needs_chromium

pytestmark = pytest.mark.slow
GRID = ["classifier.l2_normalize=true,false"]  # two runs on the same data
GENAI_ONLY = ("Judges", "Prompts", "Agent versions", "Sessions")  # the GenAI view's side bar


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grid")
    # the run is shrunk to seconds, so the sampling interval is too
    result = run_cli(*GRID, "tracking.system_metrics_seconds=1", tmp=tmp, multirun=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp, result.stdout


@pytest.fixture(scope="module")
def server(grid):
    tmp, _ = grid
    process, uri = start_mlflow_server(tmp / "server", f"sqlite:///{tmp}/mlruns/mlflow.db")
    try:
        yield uri
    finally:
        stop_mlflow_server(process)


def api(server: str, method: str, endpoint: str, **arguments) -> dict:
    if method == "GET":
        response = requests.get(f"{server}/api/2.0/mlflow/{endpoint}", params=arguments)
    else:
        response = requests.post(f"{server}/api/2.0/mlflow/{endpoint}", json=arguments)
    assert response.status_code == 200, response.text
    return response.json()


def runs(server: str) -> tuple[dict, list[dict]]:
    """The grid's parent run and its two children, as the REST API returns them."""
    experiments = api(server, "POST", "experiments/search", max_results=10)["experiments"]
    ids = [e["experiment_id"] for e in experiments]
    found = api(server, "POST", "runs/search", experiment_ids=ids)["runs"]
    tags = [{t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in found]
    (parent,) = [r for r, t in zip(found, tags, strict=True) if "sweep.parent" in t]
    children = [r for r, t in zip(found, tags, strict=True) if "mlflow.parentRunId" in t]
    assert len(children) == 2
    return parent, children


def test_each_run_has_its_splits_as_datasets_with_the_same_digests_on_the_same_data(server):
    _, children = runs(server)
    digests = []
    for run in children:
        inputs = run["inputs"]["dataset_inputs"]
        contexts = {i["tags"][0]["value"]: i["dataset"] for i in inputs}
        assert sorted(contexts) == ["test", "train", "validation"]
        assert all(re.fullmatch("[0-9a-f]{16}", d["digest"]) for d in contexts.values())
        assert contexts["test"]["name"] == "synthetic_textures-test"
        assert "/synthetic/textures_64px_8_seed0" in contexts["test"]["source"]
        digests.append({context: d["digest"] for context, d in contexts.items()})
    assert digests[0] == digests[1]


def test_the_test_metrics_carry_the_test_datasets_name_and_digest(server):
    _, children = runs(server)
    for run in children:
        test = next(
            i["dataset"] for i in run["inputs"]["dataset_inputs"] if i["tags"][0]["value"] == "test"
        )
        (output,) = run["outputs"]["model_outputs"]
        model = api(server, "GET", f"logged-models/{output['model_id']}")["model"]
        metrics = {m["key"]: m for m in model["data"]["metrics"]}
        accuracy = metrics["test/class_avg_accuracy"]
        assert (accuracy["dataset_name"], accuracy["dataset_digest"]) == (
            "synthetic_textures-test",
            test["digest"],
        )


def test_each_run_has_system_metrics(server):
    _, children = runs(server)
    for run in children:
        keys = {m["key"] for m in run["data"]["metrics"]}
        assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= keys


def test_the_parent_ends_with_an_end_time_after_its_children(server):
    parent, children = runs(server)
    assert parent["info"]["status"] == "FINISHED"
    assert int(parent["info"]["end_time"]) >= max(int(c["info"]["end_time"]) for c in children)


def test_the_test_predictions_are_a_table_artifact_beside_the_results_page(server):
    _, children = runs(server)
    for run in children:
        run_id = run["info"]["run_id"]
        listed = api(server, "GET", "artifacts/list", run_id=run_id, path="evaluation")
        assert {"evaluation/predictions_test.json", "evaluation/results_test.html"} <= {
            f["path"] for f in listed["files"]
        }
        tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        assert (
            '"path": "evaluation/predictions_test.json", "type": "table"'
            in tags["mlflow.loggedArtifacts"]
        )


def page_text(dom: str) -> list[str]:
    """The text a user reads on the page, piece by piece."""
    dom = re.sub(r"<(script|style)\b.*?</\1>", "", dom, flags=re.S)
    return [html.unescape(t).strip() for t in re.split(r"<[^>]+>", dom) if t.strip()]


def opened(link: str, server: str, cwd) -> list[str]:
    """The text of the page at a link a run printed, once Chromium has rendered it. The run
    printed `mlflow ui`'s address; this test's server listens elsewhere."""
    url = link.replace("http://127.0.0.1:5000", server)
    result = chromium("--virtual-time-budget=30000", "--dump-dom", url, cwd=cwd)
    text = page_text(result.stdout)
    assert text, result.stderr[-2000:]
    return text


@needs_chromium
def test_the_printed_links_open_the_training_view_on_the_runs_table_and_the_run(
    grid, server, tmp_path
):
    _, stdout = grid
    table, run = re.findall(r"runs table: (\S+)", stdout), re.findall(r"this run: +(\S+)", stdout)
    assert table and run, stdout[-2000:]
    parent, children = runs(server)
    text = opened(table[-1], server, tmp_path)
    assert "Model registry" in text and not set(GENAI_ONLY) & set(text), text
    assert "Runs" in text and "Training runs" not in text  # the GenAI view's title for it
    assert parent["info"]["run_name"] in text  # the table, the grid's parent in it
    text = opened(run[-1], server, tmp_path)
    assert "Model registry" in text and not set(GENAI_ONLY) & set(text), text
    (child,) = [c for c in children if c["info"]["run_id"] in run[-1]]
    train = next(
        i["dataset"] for i in child["inputs"]["dataset_inputs"] if i["tags"][0]["value"] == "train"
    )
    assert f"synthetic_textures-train ({train['digest']})" in text, text  # its Datasets


# A small sweep whose trials score differently on validation (0.33, 0.67, 0.33: the seed
# changes the split and the random weights), recorded on a tracking server over HTTP
SWEEP = [
    "sweep=svm",
    "model=choice(resnet18)",
    "resolution=choice(112)",
    "resolution.size=32",
    "seed=choice(0,1,2)",
    "hydra.sweeper.n_trials=3",
]
SCREEN = "--window-size=1400,900"  # a laptop's browser window
OBJECTIVE = "val/class_avg_accuracy"


@pytest.fixture(scope="module")
def sweep_on_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    process, uri = start_mlflow_server(tmp / "server", f"sqlite:///{tmp}/server.db")
    try:
        result = run_cli(*SWEEP, f"tracking.uri={uri}", tmp=tmp, multirun=True)
        assert result.returncode == 0, result.stderr[-3000:]
        yield uri, result.stdout
    finally:
        stop_mlflow_server(process)


@needs_chromium
def test_the_printed_runs_table_shows_the_objective_on_the_first_screen_best_run_first(
    sweep_on_server, tmp_path
):
    server, stdout = sweep_on_server
    link = re.findall(r"runs table: (\S+)", stdout)[-1]  # the sweep's own, after its trials'
    experiment = re.search(r"/experiments/(\d+)/", link).group(1)
    found = api(server, "POST", "runs/search", experiment_ids=[experiment])["runs"]
    scores = {
        run["info"]["run_id"]: {m["key"]: m["value"] for m in run["data"]["metrics"]}[OBJECTIVE]
        for run in found
        if any(t["key"] == "optuna.study" for t in run["data"]["tags"])
    }
    ranked = sorted(scores, key=scores.get, reverse=True)
    assert len(ranked) == 3 and scores[ranked[0]] > scores[ranked[1]], scores  # one best
    shot = chromium(
        SCREEN, "--virtual-time-budget=30000", "--screenshot=/tmp/runs_view.png", link, cwd=tmp_path
    )
    assert "written to file" in shot.stderr + shot.stdout, shot.stderr[-2000:]
    dom = chromium(SCREEN, "--virtual-time-budget=30000", "--dump-dom", link, cwd=tmp_path).stdout
    # The grid renders only the columns in view; the objective's header is there, and at
    # the left of the scrolling part (the pinned run name and date take ~410 px, the
    # side bar ~200, and ~370 px of the 1400 stay in view beside MLflow's assistant panel)
    header = re.search(
        rf'role="columnheader"[^>]*col-id="metrics.`{OBJECTIVE}`"[^>]*'
        r'style="left: (\d+)px; width: (\d+)px;"',
        dom,
    )
    assert header, page_text(dom)
    assert int(header.group(1)) + int(header.group(2)) <= 370
    assert OBJECTIVE in page_text(dom)
    first_rows = set(re.findall(r'row-index="0" row-id="([0-9a-f]{32})"', dom))
    assert first_rows == {ranked[0]}, (first_rows, scores)
