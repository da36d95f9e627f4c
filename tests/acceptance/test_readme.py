"""Every command block of README.md, run as written, in the order a user meets them.

Each test takes its command out of the README by the text it starts with (`command`), so
an edited command is what runs, and a README command that no test claims fails
`test_every_readme_command_is_run_or_its_skip_is_explained`. Commands are shrunk only by
appending data, epoch, trial and resolution limits and `model.weights=none` (`shrunk`).
Placeholders (`<run id>`, `<study name>`) become the ids the earlier commands printed.
"""

import json
import re
import signal
import time

import pytest
from mlflow.tracking import MlflowClient

from tests.acceptance import readme
from tests.acceptance.conftest import (
    EPOCHS,
    TRIALS,
    command,
    ok,
    run_id_of,
    shrunk,
    stop,
    texture_jpeg,
    wait_for,
)
from tests.conftest import ROOT

INSTALL = 'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[dev]"'
CLAIMED = []  # the README commands the tests below run, by the text each starts with


def claim(text: str) -> str:
    CLAIMED.append(text)
    return text


QUICK_START = claim(f"{INSTALL} && python -m src.run")
TESTS = claim(f"{INSTALL} && pytest")  # what .ci/run runs
UI = claim("mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db")
OWN_FOLDER = claim("python -m src.run dataset=folder dataset.root=~/pics/fashion model=resnet50")
QUICK_LOOK = claim("python -m src.run dataset=folder dataset.root=~/pics/fashion dataset.max")
DOWNLOAD = claim("python -m src.download urls=fashionTextureUrls.tsv name=fashionTexture")
DEDUP = claim("python -m src.dedup root=data/images/fashionTexture")
TRAIN_DOWNLOADED = claim("python -m src.run dataset=fashion_texture")
RELABEL_SHOW = claim("python -m src.relabel moves=relabel.csv root=data/images/fashionTexture")
RELABEL_APPLY = claim(f"{RELABEL_SHOW} apply=true")
DNN = claim("python -m src.run classifier=dnn")
DNN_BIG = claim("python -m src.run classifier=dnn model=resnet50 resolution=448")
SVM_REFINED = claim("python -m src.run classifier=svm_dnn_refined")
RESUME = claim("python -m src.run resume=<run id>")
SWEEP = claim("python -m src.run -m sweep=refine_dnn")
SWEEP_MORE = claim("python -m src.run -m sweep=refine_dnn hydra.sweeper.n_trials=60")
SWEEP_SVM = claim("python -m src.run -m sweep=svm")
GRID = claim("python -m src.run -m model=resnet18,resnet34,resnet50 resolution=224,448")
SWEEP_RANGE = claim("python -m src.run -m sweep=refine_dnn 'classifier.lr=tag(log")
SWEEP_FIXED = claim("python -m src.run -m sweep=refine_dnn model=resnet18 classifier.epochs=5")
TORCHRUN_CPU = claim(
    "torchrun --standalone --nproc_per_node=2 -m src.run classifier=dnn device=cpu"
)
REGISTER_RUN = claim("python -m src.register run_id=<run id>")
REGISTER_STUDY = claim("python -m src.register study=<study name>")
SERVE = claim("MLFLOW_TRACKING_URI=sqlite:///mlruns/mlflow.db mlflow models serve")
CURL = claim("curl -s localhost:5001/invocations")
CLIENT = claim("import base64\nimport time\n\nimport requests\n")  # the Python client
PREDICT = claim("python -m src.predict model=models:/fashion-texture@champion")
EXPORT = claim("python -m src.export model=runs:/<run id>/model")
ONNX_EXAMPLE = claim(
    "import json\nfrom pathlib import Path\n\nimport numpy as np\nimport onnxruntime"
)
SERVING_BENCHMARK = claim("python -m benchmarks.serving model=models:/fashion-texture@champion")
CONVNEXT = claim("python -m src.run model=convnext_tiny classifier=dnn")
VIT = claim("python -m src.run model=vit_b_16 resolution.size=224")
TIMM = claim("python -m src.run model=timm model.name=efficientnet_b0")
LR_FIND = claim("python -m src.lr_find classifier=dnn model=convnext_tiny")
SEARCH = claim("python -m src.search labels=striped,dotted,leopard items=blouse")

# README commands not run here, and why (each by the text it starts with).
SKIPPED = {
    "pip install torch torchvision --index-url": "PyTorch's CPU wheel index is not reachable "
    "from this machine; the install that follows it is what .ci/run runs",
    "python3 -m venv .venv && . .venv/bin/activate": "the CPU-only install's first line: "
    ".ci/run creates and activates the venv the same way",
    'pip install -e ".[dev]"': "the CPU-only install's last line: .ci/run runs it as written",
    "sudo ": "installs PostgreSQL and creates its users as root: tests/test_sweep_postgres.py "
    "runs the same recipe on a throwaway cluster",
    "export PGPASSWORD": "part of the PostgreSQL recipe above",
    "mlflow server --host 127.0.0.1 --port 5000 --backend-store-uri postgresql": "the "
    "PostgreSQL recipe: tests/test_sweep_postgres.py starts mlflow server on PostgreSQL",
    "MLFLOW_TRACKING_URI=http://127.0.0.1:5000 python -m src.run -m sweep=refine_dnn": "the "
    "PostgreSQL recipe's workers: tests/test_sweep_postgres.py runs two on one study",
    "sbatch ": "Slurm: no cluster here",
    "pip install hydra-submitit-launcher": "Slurm: no cluster here",
    "MLFLOW_TRACKING_URI=http://tracking:5000": "Slurm: no cluster, no host named tracking",
    "torchrun --standalone --nproc_per_node=4": "four GPUs (one process each): none here; the "
    "two-process CPU command runs",
    "python -m benchmarks.gpu": "needs a CUDA GPU",
    "python -m benchmarks --quick": "run as written (with --out to a temporary file) by "
    "tests/benchmarks/test_suite.py::test_the_whole_quick_suite_runs, a slow test",
    # the search walk-through goes on from what the search found, which needs the internet:
    # tests/test_search_walkthrough.py runs each of these against a fake Openverse and host
    "python -m src.download urls=fashion_urls.tsv": "search walk-through (see above)",
    "python -m src.dedup root=data/images/fashion_urls": "search walk-through",
    "python -m src.run dataset=folder dataset.root=data/images/fashion_urls": "search walk-through",
    "python -m src.relabel moves=relabel.csv root=data/images/fashion_urls": "search walk-through",
    "python -m src.register run_id=<the run id it printed>": "search walk-through",
    "python -m benchmarks": "the full benchmark sizes take over an hour on 2 cores; "
    "`python -m benchmarks --quick` (a slow test here) runs the same code",
}


def store(workspace) -> MlflowClient:
    return MlflowClient(f"sqlite:///{workspace.folder}/mlruns/mlflow.db")


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


def test_refinement_runs_at_every_default(workspace):
    result = ok(workspace.run(shrunk(command(DNN))))
    params = store(workspace).get_run(run_id_of(result.stdout)).data.params
    assert params["classifier.batch_size"] == "16"  # 224 px's, resolved
    assert params["classifier.schedule"] == "cosine" and params["classifier.lr"] == "0.005"


def test_refinement_with_resnet50_at_448(workspace):
    result = ok(workspace.run(shrunk(command(DNN_BIG))))
    assert "finished: dnn, resnet50" in result.stdout


def test_svm_on_the_refined_network_at_its_defaults(workspace):
    result = ok(workspace.run(shrunk(command(SVM_REFINED))))
    assert "SVM C =" in result.stdout


def test_ctrl_c_then_resume_continues_the_run(workspace):
    """A refinement interrupted by Ctrl-C after its first epoch, continued with the command
    the interruption printed, which is the README's `resume=<run id>` line."""
    long_run = shrunk(command(DNN)).replace(f" {EPOCHS}", " classifier.epochs=40")
    started = workspace.start(long_run, "interrupted.log")
    log = workspace.folder / "interrupted.log"
    try:
        deadline = time.time() + 240
        checkpoints = workspace.folder / "data" / "checkpoints"
        while not list(checkpoints.glob(f"{own_run_id(log)}/last.pt")):
            assert started.poll() is None, log.read_text()[-3000:]
            assert time.time() < deadline, log.read_text()[-3000:]
            time.sleep(0.3)
        started.send_signal(signal.SIGINT)
        started.wait(timeout=120)
    finally:
        stop(started)
    output = log.read_text()
    assert started.returncode == 130, output[-3000:]
    assert "Traceback" not in output
    last = output.strip().splitlines()[-1]
    printed = re.fullmatch(
        r"interrupted after epoch (\d+); continue with: (python -m src\.run resume=(\w+))", last
    )
    assert printed, last
    epoch, line, run_id = int(printed.group(1)), printed.group(2), printed.group(3)
    client = store(workspace)
    assert client.get_run(run_id).info.status == "KILLED"
    assert command(RESUME).replace("<run id>", run_id) == line
    # the printed line, with one epoch more than it had run, to finish soon
    resumed = ok(workspace.run(f"{line} classifier.epochs={epoch + 2}"))
    assert run_id_of(resumed.stdout) == run_id
    assert client.get_run(run_id).info.status == "FINISHED"
    steps = sorted(m.step for m in client.get_metric_history(run_id, "train/loss"))
    assert steps == list(range(epoch + 2))


def own_run_id(log) -> str:
    """The id a run printed in its log when it started; a placeholder until it has."""
    started = re.search(r"^run (\w{32}) started", log.read_text(), re.M)
    return started.group(1) if started else "not-started-yet"


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


def test_a_convnext_refines(workspace):
    result = ok(workspace.run(shrunk(command(CONVNEXT))))
    assert "finished: dnn, convnext_tiny" in result.stdout


def test_a_vision_transformer_at_a_side_its_patches_tile(workspace):
    result = ok(workspace.run(shrunk(command(VIT))))  # 32 px: two 16 px patches a side
    assert "finished: svm, vit_b_16" in result.stdout


def test_a_timm_model(workspace):
    pytest.importorskip("timm", reason="timm is the optional extra .[timm] (in .[dev] too)")
    result = ok(workspace.run(shrunk(command(TIMM))))
    assert "finished: svm" in result.stdout


def test_the_learning_rate_finder_suggests_a_rate_and_the_command(workspace):
    result = ok(workspace.run(shrunk(command(LR_FIND))))
    suggested = re.search(r"classifier\.lr=([\d.e-]+)", result.stdout)
    assert suggested and float(suggested.group(1)) > 0, result.stdout[-2000:]


def test_two_cpu_processes_refine_one_network(workspace):
    result = ok(workspace.run(shrunk(command(TORCHRUN_CPU))))
    assert "finished: dnn" in result.stdout


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
