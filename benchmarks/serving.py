"""Latency of the scoring server: single-image round trips (p50, p95) and batched throughput.

    python -m benchmarks.serving model=models:/fashion-texture@champion [calls=50]
        [batch_size=32] [batches=5] [tracking_uri=...]

starts `mlflow models serve` for the model on a free loopback port, posts a 640x480 JPEG
(decoded and letterboxed by the server, as a client's photo would be) and prints JSON.
`measure_serving_latency` is the same measurement for the benchmark suite to call.
"""

import base64
import io
import json
import platform
import time

import numpy as np
import requests
import torch
from PIL import Image

from src.command_line import (
    REQUIRED,
    at_least,
    parse_arguments,
    run_command,
    use_tracking_store,
)
from src.deployment.loading import needs_tracking_store
from src.deployment.scoring_server import scoring_server
from src.device import cpu_count

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


def photo_like_jpeg(width: int = 640, height: int = 480, seed: int = 0) -> bytes:
    """Smooth colour gradients with a little noise: compresses like a photo, not like noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    channels = [np.sin(6 * x * rng.uniform(0.5, 2) + 4 * y * rng.uniform(0.5, 2)) for _ in "rgb"]
    pixels = np.stack(channels, axis=2) * 100 + 128 + rng.normal(0, 8, (height, width, 3))
    buffer = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


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
