"""`python -m benchmarks.system_metrics [images] [size]`: does sampling MLflow's system
metrics cost featurisation throughput?

The same images are featurised inside an MLflow run (a SQLite store of its own) with system
metrics off, on at the default interval (`tracking.system_metrics_seconds`) and on at 1 s,
which magnifies any cost. The settings take turns, `REPEATS` times, and the best of each
counts: load from elsewhere on a shared machine then rarely hits one setting only. On a
busy machine that comparison is coarse, so the CPU time one sample costs (MLflow's monitor
collecting and logging it to the store) is measured too: a bound that load does not blur.
"""

import sys
import tempfile
import time
from pathlib import Path

import mlflow
import torch
from omegaconf import OmegaConf

from benchmarks.common import texture_set
from src.data.presets import ImageSpec
from src.device import Compute, pick_device
from src.features.backbone import build_featurizer
from src.features.featurize import model_outputs, prepare_for_inference
from src.tracking.mlflow_run import experiment_id, tracked_run

REPEATS = 3
SAMPLES = 20  # for the CPU time per sample
CONFIG = Path(__file__).resolve().parents[1] / "conf"


def images_per_second(model, paths, size: int, batch: int, device, sampling) -> float:
    with tracked_run(
        mlflow.get_experiment_by_name("bench").experiment_id,
        system_metrics=sampling is not None,
        sampling_seconds=sampling or 10.0,
    ):
        start = time.perf_counter()
        model_outputs(model, paths, ImageSpec(size), Compute(device), batch, "")
        if device.type == "cuda":
            torch.cuda.synchronize()
        return len(paths) / (time.perf_counter() - start)


def cpu_seconds_per_sample() -> float:
    """CPU time of one system-metrics sample, collected and logged as MLflow's monitor does."""
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    with tracked_run(mlflow.get_experiment_by_name("bench").experiment_id) as run:
        monitor = SystemMetricsMonitor(run.info.run_id)
        monitor.collect_metrics()  # psutil's first CPU reading only sets its baseline
        start = time.process_time()
        for _ in range(SAMPLES):
            monitor.collect_metrics()
            monitor.publish_metrics(monitor.aggregate_metrics())
            monitor.mlflow_logger.flush()
        return (time.process_time() - start) / SAMPLES


def main(images: int = 300, size: int = 224) -> dict:
    default = OmegaConf.load(CONFIG / "config.yaml").tracking.system_metrics_seconds
    device = pick_device("auto")
    resolution = OmegaConf.load(CONFIG / "resolution" / "224.yaml")  # the default's batches
    batch = resolution.featurize_batch_size_cpu if device.type == "cpu" else 64
    paths, _ = texture_set(images)
    model = prepare_for_inference(build_featurizer("resnet18", "none")[0], device)
    settings = {"off": None, f"every {default:g} s": float(default), "every 1 s": 1.0}
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        mlflow.set_tracking_uri(uri)
        experiment_id(uri, "bench")
        model_outputs(model, paths[:32], ImageSpec(size), Compute(device), batch, "")  # warm-up
        best = dict.fromkeys(settings, 0.0)
        for turn in range(REPEATS):
            for name, sampling in settings.items():
                rate = images_per_second(model, paths, size, batch, device, sampling)
                best[name] = max(best[name], rate)
                print(f"turn {turn + 1}, system metrics {name}: {rate:.1f} img/s", flush=True)
        per_sample = cpu_seconds_per_sample()
    print(f"{images} images, resnet18, {size} px, batch {batch}, {device}; best of {REPEATS}:")
    for name, rate in best.items():
        print(f"  system metrics {name:<11} {rate:7.1f} img/s  ({rate / best['off']:.3f} of off)")
    print(
        f"one sample: {per_sample * 1000:.1f} ms of CPU, {per_sample / default:.2%} of one core "
        f"every {default:g} s"
    )
    return {**best, "cpu seconds per sample": per_sample}


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
