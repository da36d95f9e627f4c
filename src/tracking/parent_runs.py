"""Grouping the runs of a sweep under one parent run, as the MLflow UI nests them.

Several processes (the threads of a sweep, parallel jobs, workers on other machines) may
look for the parent at the same moment. Each one creates a candidate only if it finds
none, then looks again: all of them settle on the oldest candidate and delete the others,
so there is one parent however the race went.
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


def _parents(client: MlflowClient, experiment_id: str, key: str):
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{PARENT_TAG}` = '{key}'",
        order_by=["attributes.start_time ASC"],
        max_results=50,
    )
    return sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))
