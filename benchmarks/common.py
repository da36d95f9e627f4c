"""What every benchmark shares: image sets made once, timing, the machine, Markdown tables.

Imports only torch-side code, so the GPU entry point can use it on a bare GPU image.
"""

import io
import os
import platform
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from src.data.synthetic import CLASSES, ensure_synthetic_textures
from src.device import cpu_count

BENCH_DIR = Path(
    os.environ.get("IMGSWEEP_BENCH_DIR", Path(tempfile.gettempdir()) / "imgsweep-bench")
)


def texture_set(images: int, size: int = 256) -> tuple[list[Path], np.ndarray]:
    """`images` files of the embedded synthetic set (rounded up to a multiple of 3), made once
    and kept under BENCH_DIR; their paths, classes interleaved, and labels."""
    per_class = -(-images // len(CLASSES))
    root = ensure_synthetic_textures(BENCH_DIR / f"textures-{per_class}x{size}", per_class, size, 0)
    by_class = [sorted((root / c).glob("*.jpg")) for c in CLASSES]
    paths = [p for group in zip(*by_class, strict=True) for p in group][:images]
    return paths, np.array([CLASSES.index(p.parent.name) for p in paths])


def photo_set(images: int, width: int = 320, height: int = 240) -> list[Path]:
    """`images` photo-like JPEGs (see `photo_like_jpeg`), made once and kept under BENCH_DIR."""
    folder = BENCH_DIR / f"photos-{images}x{width}x{height}"
    if not (folder / ".complete").exists():
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(images):
            (folder / f"{i:05d}.jpg").write_bytes(photo_like_jpeg(width, height, seed=i))
        (folder / ".complete").touch()
    return sorted(folder.glob("*.jpg"))


def write_colour_dataset(root: Path, per_class: int, seed: int = 0) -> Path:
    """A learnable set, even for a network with random weights: root/<red|green|blue>/*.jpg,
    48 px, the class's hue (with a little spread) at random saturation and brightness. The
    tests' set, and the sweep benchmark's: on the textures every random-weight trial sits at
    chance, so pruning there cuts nothing for a reason."""
    import cv2  # only here: the tests' conftest imports this module

    rng = np.random.default_rng(seed)
    for k, label in enumerate(("red", "green", "blue")):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            hsv = np.zeros((48, 48, 3), np.uint8)
            hsv[..., 0] = (k * 60 + rng.normal(0, 10)) % 180  # OpenCV's hue runs 0-180
            hsv[..., 1] = rng.integers(80, 255)
            hsv[..., 2] = np.clip(rng.normal(rng.integers(60, 230), 30, (48, 48)), 0, 255)
            cv2.imwrite(str(root / label / f"{i:03d}.jpg"), cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR))
    return root


def photo_like_jpeg(width: int = 640, height: int = 480, seed: int = 0) -> bytes:
    """Smooth colour gradients with a little noise: compresses like a photo, not like noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    channels = [np.sin(6 * x * rng.uniform(0.5, 2) + 4 * y * rng.uniform(0.5, 2)) for _ in "rgb"]
    pixels = np.stack(channels, axis=2) * 100 + 128 + rng.normal(0, 8, (height, width, 3))
    buffer = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def seconds(fn, repeats: int = 1) -> float:
    """Wall-clock seconds of `fn` run `repeats` times, CUDA work included."""
    synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    synchronize()
    return time.perf_counter() - start


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def machine(device: torch.device, workers: int) -> dict:
    return {
        "cpu": cpu_model(),
        "cores": cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "loader_workers": workers,
        "python": platform.python_version(),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def markdown_table(rows: list[dict]) -> str:
    """A Markdown table with one column per key of the first row; floats rounded for reading."""
    if not rows:
        return "(no rows)"
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(readable(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def readable(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value >= 100:
            return f"{value:,.0f}"
        return f"{value:.3g}" if value < 10 else f"{value:.1f}"
    return str(value)


def scratch_keys(scratch: Path) -> list[str]:
    """The overrides that give a benchmark's child run a store, data and cache folder and
    study storage of its own under `scratch`: none starts warm from another's work."""
    return [
        f"tracking.uri={scratch_store(scratch)}",
        f"paths.mlruns_dir={scratch}/mlruns",
        f"paths.data_dir={scratch}/data",
        f"paths.sweeps_dir={scratch}/sweeps",
        "tracking.system_metrics=false",
    ]


def scratch_store(scratch: Path) -> str:
    return f"sqlite:///{scratch}/mlruns/mlflow.db"


def finished_run(stdout: str, scratch: Path) -> tuple[str, dict[str, float]]:
    """The run a child `python -m src.run` printed as finished, and its logged metrics."""
    from mlflow.tracking import MlflowClient  # only here: importing mlflow takes seconds

    finished = re.search(r"^run ([0-9a-f]+) finished", stdout, re.MULTILINE)
    if finished is None:
        raise RuntimeError(f"no finished run in the output:\n{stdout[-3000:]}")
    return finished[1], MlflowClient(scratch_store(scratch)).get_run(finished[1]).data.metrics
