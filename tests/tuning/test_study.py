"""Study accounting: reproducible draws per trial, dead workers' trials failed, pruning."""

import os
import socket
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from src.errors import UserError
from src.tuning.search_space import parse_search_space, suggest
from src.tuning.study import (
    counts,
    fail_orphans,
    make_pruner,
    open_storage,
    record_heartbeat,
    redact,
    seed_for_trial,
)
from src.tuning.trial_link import TrialLink

SPACE = parse_search_space({"lr": "tag(log, interval(0.0001, 0.1))", "m": "choice(a, b, c)"}, [])


def draw(seed: int, number_of_trials_before: int) -> dict:
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    for _ in range(number_of_trials_before):
        study.tell(study.ask(), state=TrialState.FAIL)
    trial = study.ask()
    seed_for_trial(study.sampler, seed, trial.number)
    return suggest(trial, SPACE)


def test_draws_depend_on_seed_and_trial_number_not_on_the_process():
    assert draw(0, 2) == draw(0, 2)  # what another worker with the same seed draws for trial 2
    assert draw(0, 2) != draw(0, 3)  # the next trial number: another point
    assert draw(0, 2) != draw(1, 2)


def test_trials_of_a_dead_worker_are_failed_at_the_next_start(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path}/o.db", heartbeat_interval=5, grace_period=60)
    study = optuna.create_study(study_name="s", storage=storage)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    orphan = study.ask()
    orphan.set_user_attr("worker", f"{socket.gethostname()}:{dead}")
    study.tell(study.ask(), 1.0)
    assert fail_orphans(study) == {orphan.number: "its worker died"}
    assert counts(study) == {"done": 1, "in_flight": 0, "failed": 1}
    assert study.trials[orphan.number].user_attrs["error"] == "its worker died"


def test_trial_link_reports_each_epoch_and_stops_a_trial_below_the_median(tmp_path):
    url = f"sqlite:///{tmp_path}/o.db"
    pruner = {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0}
    study = optuna.create_study(
        study_name="s",
        storage=open_storage(url, 5, 60),
        direction="maximize",
        pruner=make_pruner(pruner),
    )
    good = study.ask()
    for epoch, value in enumerate([0.6, 0.7, 0.8]):
        good.report(value, epoch)
    study.tell(good, 0.8)
    weak = study.ask()
    link = TrialLink("s", url, weak.number, pruner, heartbeat_interval=1)
    try:
        assert link(0, {"val/class_avg_accuracy": 0.65}) is False  # above the median: goes on
        assert link(1, {"val/class_avg_accuracy": 0.3}) is True  # below: pruned
    finally:
        link.close()
    assert link.pruned_at == 1
    assert study.trials[weak.number].intermediate_values == {0: 0.65, 1: 0.3}
    assert study.trials[weak.number].user_attrs["worker"].endswith(f":{os.getpid()}")


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/o.db"
    return request.getfixturevalue("new_database")("study")


def test_a_trial_whose_heartbeat_stops_is_failed_after_the_grace_period(storage_url):
    study = optuna.create_study(study_name="s", storage=open_storage(storage_url, 1, 2))
    trial = study.ask()
    record_heartbeat(study, trial._trial_id)  # as the sweep does when it asks
    trial.set_user_attr("worker", "another-machine:1")  # no local pid to look up
    assert fail_orphans(study) == {}  # beating recently: alive
    time.sleep(3.2)  # > grace period, whole seconds (SQLite's clock)
    other_worker = optuna.load_study(study_name="s", storage=open_storage(storage_url, 1, 2))
    assert fail_orphans(study) == {trial.number: "its worker stopped sending heartbeats"}
    assert fail_orphans(other_worker) == {}  # one worker fails it, and only that one acts on it
    assert study.trials[trial.number].state == TrialState.FAIL


def test_a_storage_url_with_a_password_is_shown_without_it():
    assert redact("postgresql://optuna:s3cret@db:5432/optuna") == (
        "postgresql://optuna:***@db:5432/optuna"
    )
    assert redact("sweeps/study.log") == "sweeps/study.log"


def test_an_unreachable_postgresql_storage_is_one_clear_error():
    with pytest.raises(UserError, match=r"storage=postgresql://nobody:\*\*\*@127.0.0.1:9/x cannot"):
        open_storage("postgresql://nobody:pw@127.0.0.1:9/x", 1, 2)


def test_the_percentile_pruner_keeps_only_trials_in_the_top_share():
    study = optuna.create_study(
        direction="maximize",
        pruner=make_pruner(
            {"name": "percentile", "percentile": 25.0, "n_startup_trials": 3, "n_warmup_steps": 0}
        ),
    )
    for value in (0.2, 0.4, 0.6, 0.8):
        done = study.ask()
        done.report(value, 0)
        study.tell(done, value)
    second = study.ask()
    second.report(0.62, 0)  # above the median of earlier trials (0.5), under their top quarter
    assert second.should_prune()
    first = study.ask()
    first.report(0.7, 0)  # above 0.65, the 75th percentile of 0.2, 0.4, 0.6, 0.8
    assert not first.should_prune()


def test_a_patient_pruner_spares_a_trial_below_the_median_while_it_improves():
    pruner = {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0}
    study = optuna.create_study(
        direction="maximize",
        pruner=make_pruner({"name": "patient", "patience": 0, "wrapped": pruner}),
    )
    good = study.ask()
    for epoch, value in enumerate([0.8, 0.9, 0.95]):
        good.report(value, epoch)
    study.tell(good, 0.95)
    climbing, falling = study.ask(), study.ask()
    for epoch, (up, down) in enumerate([(0.3, 0.3), (0.5, 0.2)]):
        climbing.report(up, epoch)
        falling.report(down, epoch)
    # patience 0: the median is asked only when a trial fell below its best so far (Optuna's
    # rule: best before - min_delta > best since; a flat trial is never asked)
    assert not climbing.should_prune()  # below the median, but better than an epoch ago
    assert falling.should_prune()
    with pytest.raises(UserError, match="hydra.sweeper.pruner"):
        make_pruner({"name": "patient", "patience": 0, "wrapped": pruner, "typo": 1})


def test_workers_opening_a_new_study_database_at_once_all_get_it(tmp_path):
    """Sweep workers started together on a new SQLite study: each creates the tables and
    the schema version row, and the ones that lose that race open what the winner made."""
    import multiprocessing

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        opened = pool.starmap(_open_after, [(url, time.time() + 3)] * 6)
    assert opened == [True] * 6


def _open_after(url: str, start: float) -> bool:
    time.sleep(max(0.0, start - time.time()))  # all at once, as workers launched together
    open_storage(url, 1, 2)
    return True
