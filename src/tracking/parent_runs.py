"""Grouping the runs of a sweep under one parent run, as the MLflow UI nests them.

Several processes (the threads of a sweep, parallel jobs, workers on other machines) may
look for the parent at the same moment. Each one creates a candidate only if it finds
none, then looks again: all of them settle on the oldest candidate and delete the others,
so there is one parent however the race went.

A parent ends once, when its last job ends, with the status `parent_status` gives: the
Optuna sweeper ends it when no trial of its study still runs (src/tuning/sweep_loop.py), a
plain Hydra grid when its last job ends (src/tracking/grid_parent.py).
"""

import time

from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

PARENT_TAG = "sweep.parent"  # marks parent runs; its value is the sweep's key


def find_or_create_parent(uri: str, experiment_id: str, key: str, name: str, tags: dict) -> str:
    """The run id of the parent for `key` (a study name, a sweep folder)."""
    client = MlflowClient(uri)
    candidates = _parents(client, experiment_id, key)
    if not candidates:
        run = client.create_run(experiment_id, run_name=name, tags={PARENT_TAG: key, **tags})
        time.sleep(0.5)  # let a concurrent creator's run become visible before settling
        candidates = _parents(client, experiment_id, key)
        for loser in candidates[1:]:
            if loser.info.run_id == run.info.run_id:
                client.delete_run(loser.info.run_id)
    parent = candidates[0].info.run_id
    if client.get_run(parent).info.status != "RUNNING":
        client.update_run(parent, RunStatus.to_string(RunStatus.RUNNING))
    return parent


def parent_status(job_ends: list[str], stopped: str | None = None) -> str:
    """How a parent run ends, from its jobs' ends (MLflow run statuses): KILLED when the
    sweep was interrupted (a job ended KILLED), `stopped` when the sweep itself stopped on
    an error (FAILED), FAILED when every job failed, else FINISHED (also when no job had
    anything left to run)."""
    if "KILLED" in job_ends or stopped == "KILLED":
        return "KILLED"
    if stopped:
        return stopped
    if job_ends and all(end == "FAILED" for end in job_ends):
        return "FAILED"
    return "FINISHED"


def _parents(client: MlflowClient, experiment_id: str, key: str):
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{PARENT_TAG}` = '{key}'",
        order_by=["attributes.start_time ASC"],
        max_results=50,
    )
    return sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))
