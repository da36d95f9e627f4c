"""The README's commands the acceptance tests run, each by the text it starts with, and the
ones they do not run, with the reason. `test_readme.py` checks that together they cover
every command of the README, so a new command cannot go untested unnoticed."""

INSTALL = 'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[dev]"'
CLAIMED = []  # the README commands the tests below run, by the text each starts with


def claim(text: str) -> str:
    CLAIMED.append(text)
    return text


QUICK_START = claim(f"{INSTALL} && python -m src.run")
TESTS = claim(f"{INSTALL} && pytest")  # what .ci/run runs
UI = claim("mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db")
# run by tests/tracking/test_readme_recipes.py, in the folder of a run made as the README says
LOAD_TABLE = claim('import mlflow\n\nmlflow.set_tracking_uri("sqlite:///mlruns/mlflow.db")')
OWN_FOLDER = claim("python -m src.run dataset=folder dataset.root=~/pics/fashion model=resnet50")
QUICK_LOOK = claim("python -m src.run dataset=folder dataset.root=~/pics/fashion dataset.max")
DOWNLOAD = claim("python -m src.download urls=fashionTextureUrls.tsv name=fashionTexture")
DEDUP = claim("python -m src.dedup root=data/images/fashionTexture")
TRAIN_DOWNLOADED = claim("python -m src.run dataset=fashion_texture")
RELABEL_SHOW = claim("python -m src.relabel moves=relabel.csv root=data/images/fashionTexture")
RELABEL_APPLY = claim(f"{RELABEL_SHOW} apply=true")
LABEL_ISSUES = claim("python -m src.label_issues dataset=folder dataset.root=data/images/fashion")
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
SWEEP_BUDGET = claim("python -m src.run -m sweep=refine_dnn hydra.sweeper.budget=30m")
SWEEP_AUTO = claim("python -m src.run -m sweep=auto hydra.sweeper.budget=30m")
TORCHRUN_CPU = claim(
    "torchrun --standalone --nproc_per_node=2 -m src.run classifier=dnn device=cpu"
)
REGISTER_RUN = claim("python -m src.register run_id=<run id>")
REGISTER_STUDY = claim("python -m src.register study=<study name>")
SERVE = claim(
    "MLFLOW_TRACKING_URI=sqlite:///mlruns/mlflow.db MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false "
    "mlflow models serve"
)
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
