"""What a run and a sweep print (issue 28): no INFO lines of MLflow's or Optuna's, each link
block once, and a bar while the SVM fits; warnings of either library still show."""

import subprocess
import sys

import pytest

from tests.conftest import ROOT, run_cli

# lines every run or sweep printed before issue 28, none of them the user's business
CHATTER = [
    "Creating initial MLflow database tables",
    "Updating database tables",
    "Validating input example against model signature",
    "A new study created",
    " INFO mlflow",
    "[I ",  # Optuna's INFO prefix
]


def chatter(output: str) -> list[str]:
    return [line for line in output.splitlines() if any(c in line for c in CHATTER)]


@pytest.fixture(autouse=True)
def as_a_user_starts_it(monkeypatch):
    """This process imported src, which sets MLflow's level for the processes it starts: a
    user's shell has no such variable, so neither do the runs here."""
    monkeypatch.delenv("MLFLOW_LOGGING_LEVEL", raising=False)


@pytest.mark.slow  # a run (tests/test_run.py checks the default suite's run the same way)
def test_a_run_prints_no_library_chatter_and_shows_the_svm_fitting(tmp_path):
    # a store that does not exist yet, as on a user's first run: MLflow creates its tables
    result = run_cli(f"tracking.uri=sqlite:///{tmp_path}/first/mlflow.db", tmp=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert chatter(result.stdout + result.stderr) == []
    assert "fitting the SVM" in result.stderr  # tqdm's bar, on stderr
    assert result.stdout.count("compare runs: ") == 1  # a single run prints its links


@pytest.mark.slow  # a two-trial sweep
def test_a_sweep_prints_no_library_chatter_and_its_links_once(tmp_path):
    result = run_cli(
        "sweep=svm",
        "model=choice(resnet18)",
        "resolution=choice(112)",
        "resolution.size=choice(32,40)",
        "hydra.sweeper.n_trials=2",
        tmp=tmp_path,
        multirun=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert chatter(result.stdout + result.stderr) == []
    assert result.stdout.count("trial 1: ") == 2  # both trials ran (their start and score)
    # no block per trial: the sweep's links, once, at its end
    assert result.stdout.count("compare runs: ") == 1
    assert result.stdout.count("runs table: ") == 1


def test_the_libraries_warnings_still_show():
    script = (
        "import src.tuning, mlflow, optuna\n"
        "import logging\n"
        "logging.getLogger('mlflow.store').warning('mlflow warns')\n"
        "optuna.logging.get_logger('optuna.study').warning('optuna warns')\n"
        "logging.getLogger('mlflow.store').info('mlflow informs')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "mlflow warns" in result.stderr and "optuna warns" in result.stderr
    assert "mlflow informs" not in result.stderr
