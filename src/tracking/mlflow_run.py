"""The MLflow side of a run: where the store is, the run's lifecycle, params and links.

The default store is SQLite (`sqlite:///mlruns/mlflow.db`) with artifacts in `mlruns/`;
`tracking.uri` on the command line wins over `MLFLOW_TRACKING_URI`, which wins over the
default (conf/config.yaml says so with `oc.env`). Each experiment gets an
absolute artifact location, so artifacts land in the store wherever a run is started.

With a tracking server, MLflow's client retries a request that fails (connection refused,
5xx, 429) with exponential backoff; `tracking.retry_seconds` bounds that. A run whose server
is still gone after it fails with `TrackingLost`, ending the run locally without waiting
again (the server keeps it RUNNING until it is resumed).

The links printed open MLflow 3's "Model training" view (Runs, Models, Model registry in
the side bar); without `workflowType=machine_learning` the UI opens an experiment on its
GenAI view (Traces, Sessions, Judges, Prompts). The UI routes in the URL's fragment, so
the parameter goes after the `#/...` route: before the `#` it is ignored (checked in
Chromium against MLflow 3.17).
"""

import contextlib
import logging
import math
import os
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from src.errors import UserError
from src.tracking.store import sqlite_file

log = logging.getLogger(__name__)

UI_ADDRESS = "http://127.0.0.1:5000"  # where `mlflow ui` listens by default
TRAINING_VIEW = "workflowType=machine_learning"  # the UI's "Model training" view, not GenAI's
SAMPLING_VARIABLE = "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"  # MLflow's; a user's wins
RETRY_VARIABLES = (  # MLflow's own; those a user set in the environment win
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
)
_USER_SET = {name for name in (*RETRY_VARIABLES, SAMPLING_VARIABLE) if name in os.environ}
_retry_seconds = [120.0]


class TrackingLost(UserError):
    """The tracking server stopped answering during a run, and did not come back in time."""


def configure_retries(retry_seconds: float) -> None:
    """Let MLflow's client retry a server that does not answer for about `retry_seconds`:
    n retries with backoff waits of 0, 2, 4, 8, ... s (2^n - 2 s in all). A server that
    accepts connections and then hangs also costs the per-request timeout on each try:
    a quarter of `retry_seconds`, 5 to 60 s."""
    retries = 0 if retry_seconds <= 0 else min(10, round(math.log2(retry_seconds + 2)))
    chosen = {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": retries,
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": 1,
        "MLFLOW_HTTP_REQUEST_TIMEOUT": max(5, min(60, int(retry_seconds // 4))),
    }
    for name, value in chosen.items():
        if name not in _USER_SET:
            os.environ[name] = str(value)
    _retry_seconds[0] = retry_seconds


def server_unreachable(uri: str) -> bool:
    """Is this a tracking server that does not answer now? (False for a local store.)"""
    if not uri.startswith(("http://", "https://")):
        return False
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5):
            return False
    except (urllib.error.URLError, OSError):
        return True


def resolve_uri(uri: str, base_dir: Path) -> str:
    """The tracking URI with a relative SQLite path made absolute against `base_dir` (where
    the user ran the command)."""
    database = sqlite_file(uri)
    if database is not None and not database.is_absolute():  # sqlite:////abs/x.db is kept
        uri = "sqlite:///" + str((Path(base_dir) / database).resolve())
    elif "://" not in uri:  # a bare folder: MLflow's deprecated file store; keep it explicit
        uri = str((Path(base_dir) / uri).resolve())
    return uri


def check_reachable(uri: str) -> None:
    """Fail now, before any heavy work, if runs could not be recorded."""
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10):
                return
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise UserError(
                f"the MLflow tracking server {uri} cannot be reached ({reason}); start it, or "
                "set tracking.uri (or MLFLOW_TRACKING_URI) to a store that can be"
            ) from None
    if (database := sqlite_file(uri)) is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
    try:
        MlflowClient(uri).search_experiments(max_results=1)
    except Exception as error:  # noqa: BLE001 - each store fails in its own way
        raise UserError(f"the MLflow tracking store {uri} cannot be opened ({error})") from None


def artifact_location(uri: str, experiment: str) -> str | None:
    """`mlruns/artifacts/<experiment>` beside a SQLite store; a server decides for itself."""
    if (database := sqlite_file(uri)) is not None:
        return (database.parent / "artifacts" / _slug(experiment)).as_uri()
    return None


def experiment_id(uri: str, name: str) -> str:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location(uri, name))
    except mlflow.exceptions.MlflowException:  # another process created it just now
        return client.get_experiment_by_name(name).experiment_id


@contextmanager
def tracked_run(
    experiment: str,
    run_name: str | None = None,
    tags: dict | None = None,
    *,
    run_id: str | None = None,
    nested: bool = False,
    system_metrics: bool = False,
    sampling_seconds: float = 10.0,
):
    """An active MLflow run that ends FINISHED, or FAILED (KILLED on Ctrl-C) with the
    error recorded as the `error` tag: never left RUNNING, unless its tracking server went
    away (then it raises TrackingLost, and the run waits on the server to be resumed).

    `system_metrics`: MLflow samples CPU, memory, disk, network and, with NVML on an NVIDIA
    GPU, its utilisation and memory every `sampling_seconds`, as `system/...` metrics (a
    run shorter than one interval gets none: MLflow drops the last, partial, interval)."""
    if system_metrics and SAMPLING_VARIABLE not in _USER_SET:
        os.environ[SAMPLING_VARIABLE] = str(sampling_seconds)
    with mlflow.start_run(
        run_id=run_id,
        experiment_id=experiment,
        run_name=run_name,
        tags=tags,
        nested=nested,
        log_system_metrics=system_metrics,
    ) as run:
        try:
            yield run
        except BaseException as error:
            uri = mlflow.get_tracking_uri()
            if not isinstance(error, KeyboardInterrupt) and server_unreachable(uri):
                _let_go_of_active_run()
                raise TrackingLost(
                    f"the MLflow tracking server {uri} stopped answering (given up after "
                    f"retrying for about {_retry_seconds[0]:g} s: tracking.retry_seconds)"
                ) from error
            mlflow.set_tag("error", f"{type(error).__name__}: {error}"[:5000])
            if isinstance(error, KeyboardInterrupt):  # MLflow itself would say FAILED
                mlflow.end_run("KILLED")
            raise


def _let_go_of_active_run() -> None:
    """End the active run here, trying the server once, briefly, instead of retrying."""
    saved = {name: os.environ.get(name) for name in RETRY_VARIABLES}
    os.environ.update(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="2")
    try:
        with contextlib.suppress(Exception):
            mlflow.end_run("FAILED")
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def log_config(config: dict, yaml_text: str, name: str = "config.yaml") -> None:
    """The resolved config as flattened dotted params, and as a YAML artifact."""
    log_params_once({key: _param_value(value) for key, value in flatten(config).items()})
    mlflow.log_text(yaml_text, name)


def log_params_once(params: dict) -> None:
    """Log the params the active run does not have yet. A resumed run keeps its first
    values (MLflow refuses to change a param); a differing new value becomes a
    `resumed.<key>` tag instead."""
    existing = mlflow.get_run(mlflow.active_run().info.run_id).data.params
    new = {k: v for k, v in params.items() if k not in existing}
    changed = {
        f"resumed.{k}": str(v) for k, v in params.items() if k in existing and str(v) != existing[k]
    }
    if new:
        mlflow.log_params(new)
    if changed:
        mlflow.set_tags(changed)


def flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def find_run(uri: str, run_id: str):
    """The run with this id, or a clear error."""
    try:
        return MlflowClient(uri).get_run(run_id)
    except mlflow.exceptions.MlflowException:
        raise UserError(f"resume={run_id}: no such run in the tracking store {uri}") from None


def finish_parent(uri: str, run_id: str, status: str = "FINISHED") -> None:
    """End a sweep's parent run as MLflow ends its own runs: with a status and an end time
    (`update_run` alone leaves the end time empty, and the UI's Duration blank)."""
    MlflowClient(uri).set_terminated(run_id, status)


def git_commit(folder: Path) -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def runs_url(
    uri: str, experiment_id: str, run_id: str | None = None, view: str | None = None
) -> str:
    """The MLflow UI's runs table of an experiment (or one run's page), in the training view;
    `view`: a saved view's key (src/tracking/runs_view.py), which sets its columns and order."""
    route = f"experiments/{experiment_id}/runs" + (f"/{run_id}" if run_id else "")
    shared = f"&viewStateShareKey={urllib.parse.quote(view)}" if view else ""
    return f"{ui_address(uri)}/#/{route}?{TRAINING_VIEW}{shared}"


def model_version_url(uri: str, name: str, version: str) -> str:
    """The MLflow UI's page of one registered model version."""
    return f"{ui_address(uri)}/#/models/{urllib.parse.quote(name)}/versions/{version}"


def ui_address(uri: str) -> str:
    """Where the UI of this store is: the tracking server itself, else `mlflow ui`'s default."""
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else UI_ADDRESS


def ui_command(uri: str) -> str | None:
    if uri.startswith(("http://", "https://")):
        return None
    return f"mlflow ui --backend-store-uri {uri}"


def _param_value(value) -> str:
    text = "null" if value is None else str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."  # MLflow's limit per param


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "experiment"
