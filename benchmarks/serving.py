"""Latency of the scoring server: single-image round trips (p50, p95) and batched throughput.

    python -m benchmarks.serving model=models:/fashion-texture@champion [calls=50]
        [batch_size=32] [batches=5] [tracking_uri=...]

starts `mlflow models serve` for the model on a free loopback port, posts a 640x480 JPEG
(decoded and letterboxed by the server, as a client's photo would be) and prints JSON.
`measure_serving_latency` is the same measurement for the benchmark suite to call.
"""

import base64
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests
import torch
from mlflow.tracking import MlflowClient

from benchmarks.common import photo_like_jpeg
from src.command_line import REQUIRED, at_least, parse_arguments, run_command
from src.deployment.loading import needs_tracking_store
from src.deployment.scoring_server import scoring_server
from src.device import cpu_count
from src.tracking.store import use_tracking_store

ROOT = Path(__file__).resolve().parents[1]
WARMUP_CALLS = 3  # the first calls pay for lazy initialisation; not counted


def measure_serving_latency(
    model_uri: str,
    tracking_uri: str | None = None,
    calls: int = 50,
    batch_size: int = 32,
    batches: int = 5,
) -> dict:
    image = base64.b64encode(photo_like_jpeg()).decode()
    with scoring_server(model_uri, tracking_uri) as server, requests.Session() as session:
        url = server.url

        def post(rows: int) -> float:
            body = {"dataframe_records": [{"image": image}] * rows}
            start = time.perf_counter()
            response = session.post(f"{url}/invocations", json=body, timeout=300)
            elapsed = time.perf_counter() - start
            response.raise_for_status()
            return elapsed

        for _ in range(WARMUP_CALLS):
            post(1)
        single = np.array([post(1) for _ in range(calls)]) * 1000
        post(batch_size)
        batched = np.array([post(batch_size) for _ in range(batches)])
    return {
        "model": model_uri,
        "image": "640x480 JPEG",
        "single_image_ms_p50": round(float(np.percentile(single, 50)), 1),
        "single_image_ms_p95": round(float(np.percentile(single, 95)), 1),
        "batch_size": batch_size,
        "batch_ms_p50": round(float(np.median(batched)) * 1000, 1),
        "batch_images_per_s": round(batch_size / float(np.median(batched)), 1),
        "calls": calls,
        "batches": batches,
        "machine": f"{cpu_count()} CPU cores, {platform.machine()}",
        "device": "cuda" if torch.cuda.is_available() else "cpu",  # where the server scores
    }


def serving_benchmark(calls: int, batches: int, data_dir: Path) -> list[dict]:
    """Benchmark 7: train the default job's model (resnet18, 224 px, random weights: the
    latency is the same) into a temporary store, serve it, and measure it."""
    with tempfile.TemporaryDirectory(prefix="serving-") as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        command = [
            sys.executable,
            "-m",
            "src.run",
            "model=resnet18",
            "resolution=224",
            "model.weights=none",
            "dataset.synthetic.images_per_class=8",
            f"paths.data_dir={data_dir}",
            f"tracking.uri={uri}",
        ]
        environment = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        done = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, env=environment, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"training the served model failed: {done.stderr[-3000:]}")
        client = MlflowClient(uri)
        experiments = [e.experiment_id for e in client.search_experiments()]
        (run,) = client.search_runs(experiments)
        result = measure_serving_latency(f"runs:/{run.info.run_id}/model", uri, calls, 32, batches)
    result["model"] = "resnet18, 224 px (svm head)"
    print(f"serving: {result}", flush=True)
    return [result]


def main(argv: list[str]) -> None:
    arguments = parse_arguments(
        argv,
        {"model": REQUIRED, "calls": 50, "batch_size": 32, "batches": 5, "tracking_uri": None},
    )
    model = arguments["model"]
    uri = use_tracking_store(arguments["tracking_uri"]) if needs_tracking_store(model) else None
    result = measure_serving_latency(
        model,
        uri,
        at_least(arguments, "calls", 1),
        at_least(arguments, "batch_size", 1),
        at_least(arguments, "batches", 1),
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    run_command(main)
