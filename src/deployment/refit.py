"""A finished run's model, logged again: for a sweep trial that kept none (src.register).

A sweep keeps one logged model per study (src/tracking/study_models.py), and a finished
run keeps no checkpoint. So the trial is trained again: its own command (the `command` tag)
runs `python -m src.run` into a scratch store, and the model it makes is logged into the
trial's run. With fixed seeds a CPU run is reproducible; the new run must show every one
of the trial's settings and final metrics exactly, else nothing is logged (a GPU run, whose
cuDNN kernels vary, may not repeat).
"""

import base64
import fnmatch
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import mlflow
import torch
from mlflow.entities import LoggedModel, LoggedModelOutput, Run
from mlflow.models import Model
from mlflow.tracking import MlflowClient

from src.errors import UserError
from src.tracking.pyfunc_model import log_model
from src.tracking.study_models import MODEL_NAME, logged_models

# Settings that say where a run is kept and how it is fed, never what it computes
WHERE = ("tracking.*", "paths.*", "trial.*", "resume", "num_workers", "dataset.root")
# Metrics that measure the machine, not the model
MACHINE = ("time/*", "system/*")


def log_model_again(client: MlflowClient, run: Run) -> LoggedModel:
    """Train the run again from its command, check it is the same, and log its model into
    the run; returns that logged model."""
    run_id = run.info.run_id
    if run.data.tags.get("optuna.pruned") == "true":
        raise UserError(f"run {run_id} is a pruned trial: it stopped early and has no model")
    command = json.loads(run.data.tags.get("command") or "null")
    if command is None:
        raise UserError(f"run {run_id} has no logged model named {MODEL_NAME!r}")
    print(
        f"run {run_id} keeps no model (a sweep keeps its best trial's): training it again "
        "from its command to log it",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        again = _train_again(command, Path(tmp))
        if differences := _differences(run, again["run"]):
            raise UserError(
                f"run {run_id} trained again differs ({'; '.join(differences[:3])}): "
                "its model is not logged (a run repeats exactly on the CPU only)"
            )
        mlflow.set_tracking_uri(client.tracking_uri)
        model = client.create_logged_model(
            run.info.experiment_id,
            name=MODEL_NAME,
            source_run_id=run_id,
            params=run.data.params,
        )
        log_model(again["spec"], again["example"], model_id=model.model_id)
        client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=0)])
    print(f"  logged as models:/{model.model_id}: same settings and metrics as the run")
    return logged_models(client, run)[-1]


def _train_again(command: list[str], tmp: Path) -> dict:
    """The run's command run again into a scratch store in `tmp`: its run, the served
    network's spec and the example image of the model it logged."""
    uri = f"sqlite:///{tmp}/mlflow.db"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "src.run",
            *command,
            f"tracking.uri={uri}",
            f"paths.checkpoint_dir={tmp}/checkpoints",
            "tracking.system_metrics=false",
        ],
        stdout=subprocess.PIPE,  # its summary names the scratch store; its progress shows
        text=True,
    )
    if result.returncode != 0:
        raise UserError(f"training the run again failed (exit {result.returncode}): see above")
    scratch = MlflowClient(uri)
    (again,) = scratch.search_runs([e.experiment_id for e in scratch.search_experiments()])
    (model,) = logged_models(scratch, again)
    folder = Path(mlflow.artifacts.download_artifacts(model.artifact_location, dst_path=tmp))
    example = Model.load(folder).load_input_example(folder)
    return {
        "run": again,
        "spec": torch.load(folder / "artifacts" / "network.pt", weights_only=False),
        "example": base64.b64decode(example["image"][0]),
    }


def _differences(run: Run, again: Run) -> list[str]:
    """What the run trained again does not repeat: a setting or a final metric."""
    params, metrics = again.data.params, again.data.metrics
    return [
        f"{key}: the run has {value!r}, trained again {params.get(key)!r}"
        for key, value in run.data.params.items()
        if not _matches(key, WHERE) and params.get(key) != value
    ] + [
        f"{key}: the run has {value!r}, trained again {metrics.get(key)!r}"
        for key, value in run.data.metrics.items()
        if not _matches(key, MACHINE) and metrics.get(key) != value
    ]


def _matches(key: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in patterns)
