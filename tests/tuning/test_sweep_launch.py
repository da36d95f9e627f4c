"""How the sweeper launches trials: with n_jobs > 1, each in a process of its own."""

from types import SimpleNamespace

import pytest

from src.tuning.sweep_loop import in_processes


@pytest.mark.parametrize(
    ("configured", "n_jobs", "expected"),
    [(1, 2, 2), (1, 3, 3), (4, 2, 4), (1, 1, 1)],
)
def test_the_joblib_launcher_gets_a_process_for_each_trial_in_flight(configured, n_jobs, expected):
    """joblib runs a job in the calling thread when its n_jobs comes to 1 (n_jobs=-1 on one
    core): two of the sweeper's threads then ran two pipelines in one process, and one
    trial's generated data vanished under the other (CI, one core per test worker)."""
    launcher = SimpleNamespace(joblib={"n_jobs": configured})
    in_processes(launcher, n_jobs)
    assert launcher.joblib["n_jobs"] == expected


def test_a_launcher_without_joblib_settings_is_left_alone():
    launcher = SimpleNamespace()
    in_processes(launcher, 2)
    assert not hasattr(launcher, "joblib")
