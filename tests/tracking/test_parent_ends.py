"""Every parent run ends: once, when its last job ends, FAILED if every job failed. The grid's
job-end ledger (src/tracking/grid_parent.py) and the Optuna sweep's end (sweep_loop)."""

import os
import tempfile
import threading
from pathlib import Path

import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlflow.tracking import MlflowClient

from src.tracking.grid_parent import record_end
from src.tracking.mlflow_run import experiment_id
from src.tracking.parent_runs import find_or_create_parent, parent_status
from src.tuning import sweep_loop
from src.tuning.study import NOT_RUN
from tests.conftest import fresh_store


@pytest.mark.parametrize(
    ("ends", "stopped", "status"),
    [
        (["FINISHED", "FAILED"], None, "FINISHED"),
        (["FAILED", "FAILED"], None, "FAILED"),
        ([], None, "FINISHED"),  # nothing left to run
        (["FINISHED", "KILLED"], None, "KILLED"),
        (["FINISHED"], "FAILED", "FAILED"),  # the sweep stopped on an error
        (["FINISHED"], "KILLED", "KILLED"),
    ],
)
def test_a_parent_ends_failed_only_when_every_job_failed(ends, stopped, status):
    assert parent_status(ends, stopped) == status


def grid_folder(root: Path, values: int, max_batch_size=None) -> Path:
    """A sweep folder as Hydra's basic sweeper leaves it before its first job."""
    folder = root / "grid"
    folder.mkdir()
    (folder / "multirun.yaml").write_text(
        "hydra:\n  sweeper:\n"
        "    _target_: hydra._internal.core_plugins.basic_sweeper.BasicSweeper\n"
        f"    max_batch_size: {max_batch_size or 'null'}\n    params: null\n"
        f"  overrides:\n    task:\n    - seed={','.join(map(str, range(values)))}\n"
        "    - model=resnet18\n"
    )
    return folder


jobs = st.lists(
    st.tuples(st.sampled_from(["FINISHED", "FAILED"]), st.sampled_from([None, "p", "q"])),
    min_size=1,
    max_size=6,
)


@settings(max_examples=60, deadline=None)
@given(jobs=jobs, batch=st.sampled_from([None, 1, 2, 4]), data=st.data())
def test_a_grids_parents_end_once_after_its_last_job_in_any_order(jobs, batch, data):
    """Jobs end in any order within a batch; the basic sweeper runs the next batch only if
    none in this one failed. Exactly one job's end ends the parents, the last to run."""
    with tempfile.TemporaryDirectory() as root:
        folder = grid_folder(Path(root), len(jobs), batch)
        size = batch or len(jobs)
        batches = [list(range(i, min(i + size, len(jobs)))) for i in range(0, len(jobs), size)]
        calls, ran = [], []
        for numbers in batches:
            for number in data.draw(st.permutations(numbers)):
                status, parent = jobs[number]
                joined = {"uri": "u", "parent": parent} if parent else {}
                calls.append(record_end(folder, number, status, joined))
                ran.append(number)
            if any(jobs[n][0] == "FAILED" for n in numbers):
                break
        assert all(not ended for ended in calls[:-1]), calls
        expected = {}
        for number in ran:
            if jobs[number][1]:
                expected.setdefault(("u", jobs[number][1]), []).append(jobs[number][0])
        assert {k: sorted(v) for k, v in calls[-1].items()} == {
            k: sorted(v) for k, v in expected.items()
        }


def test_parallel_jobs_ending_together_end_their_parent_once(tmp_path):
    folder = grid_folder(tmp_path, 8)
    start, results = threading.Barrier(8), []

    def job(number):
        start.wait()
        results.append(record_end(folder, number, "FINISHED", {"uri": "u", "parent": "p"}))

    threads = [threading.Thread(target=job, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r for r in results if r] == [{("u", "p"): ["FINISHED"] * 8}]


def test_an_interrupted_job_ends_its_grids_parent_at_once_killed(tmp_path):
    folder = grid_folder(tmp_path, 3)
    assert record_end(folder, 0, "FINISHED", {"uri": "u", "parent": "p"}) == {}
    ended = record_end(folder, 1, "KILLED", {"uri": "u", "parent": "p"})
    assert parent_status(ended[("u", "p")]) == "KILLED"


def test_a_rerun_into_the_same_folder_counts_its_own_jobs(tmp_path):
    folder = grid_folder(tmp_path, 2)
    record_end(folder, 0, "FINISHED", {"uri": "u", "parent": "p"})
    record_end(folder, 1, "FINISHED", {"uri": "u", "parent": "p"})
    later = (folder / "multirun.yaml").stat().st_mtime_ns + 10**9
    os.utime(folder / "multirun.yaml", ns=(later, later))  # Hydra writes it again: a new launch
    assert record_end(folder, 0, "FAILED", {"uri": "u", "parent": "p"}) == {}
    assert record_end(folder, 1, "FAILED", {"uri": "u", "parent": "p"}) == {
        ("u", "p"): ["FAILED", "FAILED"]
    }


@pytest.fixture
def parent(tmp_path):
    fresh_store(tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    return uri, find_or_create_parent(uri, experiment_id(uri, "e"), "optuna:s", "s", {})


def end_sweep(uri, parent_id, study, stopped=None):
    context = {"study": study, "uri": uri, "parent": parent_id, "lost": None}
    sweep_loop._end_parent(context, stopped)
    return MlflowClient(uri).get_run(parent_id).info.status


def test_a_sweep_leaves_its_parent_running_while_another_process_runs_a_trial(parent):
    uri, parent_id = parent
    study = optuna.create_study()
    study.tell(study.ask(), 1.0)
    elsewhere = study.ask()
    elsewhere.set_user_attr("worker", "another-machine:1")
    assert end_sweep(uri, parent_id, study) == "RUNNING"
    study.tell(elsewhere, 2.0)  # that process's last trial ends: it ends the parent
    assert end_sweep(uri, parent_id, study) == "FINISHED"


def test_a_sweep_whose_every_trial_failed_ends_its_parent_failed(parent):
    uri, parent_id = parent
    study = optuna.create_study()
    for _ in range(2):
        study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    repeat = study.ask()  # a draw told FAIL unrun: no job's outcome
    repeat.set_user_attr(NOT_RUN, True)
    study.tell(repeat, state=optuna.trial.TrialState.FAIL)
    assert end_sweep(uri, parent_id, study) == "FAILED"


def test_draws_told_fail_unrun_are_no_failed_job(parent):
    uri, parent_id = parent
    study = optuna.create_study()
    repeat = study.ask()  # a rerun whose one draw repeated a done point: nothing ran
    repeat.set_user_attr(NOT_RUN, True)
    study.tell(repeat, state=optuna.trial.TrialState.FAIL)
    assert end_sweep(uri, parent_id, study) == "FINISHED"
