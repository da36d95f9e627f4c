"""The embedded default dataset: procedurally generated fabric textures on garments.

The original workflow's three classes (dotted, leopard, striped), rendered the way such
photos look: a patterned fabric with random colours and scale, distorted by folds and
perspective, shaded, cut to a garment silhouette on a background, with sensor noise and
JPEG artefacts. Colours are drawn from one distribution for all classes, so the classes
cannot be told apart by colour alone; only the pattern tells them apart.
Deterministic: the same seed always gives the same bytes.
"""

import os
import shutil
import tempfile
from concurrent.futures import Executor, ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from src.device import children_context, cpu_count
from src.errors import UserError

CLASSES = ("dotted", "leopard", "striped")


def ensure_synthetic_textures(
    root: Path, images_per_class: int, image_size: int, seed: int
) -> Path:
    """Generate the dataset into `root` unless a complete copy is already there."""
    root = Path(root)
    if (root / ".complete").exists():
        return root
    if root.is_dir() and any(root.iterdir()):
        # Someone's own images, most likely `dataset.root=...` without `dataset=folder`: the
        # generated set replaces its folder whole, so it must never be put over theirs.
        raise UserError(
            f"dataset.root={root} holds files but not the generated synthetic set; "
            "to train on your own images add dataset=folder (nothing was changed)"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    # A folder of this call's own: two trials may generate at once in one process (Hydra's
    # joblib launcher runs a trial in the sweeper's thread where it has one core), so a
    # name from the process id alone was shared, and one removed the other's.
    tmp = Path(tempfile.mkdtemp(prefix=f"{root.name}.tmp", dir=root.parent))
    for label in CLASSES:
        (tmp / label).mkdir(parents=True)
    jobs = [
        (label, k, i, seed, image_size)
        for k, label in enumerate(CLASSES)
        for i in range(images_per_class)
    ]
    # One process per core: rendering is numpy on one core, 17 s for the default 450 images
    # on a 2-core machine, and every new user's first run waits for it. Each image has its own
    # seed, so the bytes do not depend on which process draws it.
    with (
        tqdm(total=len(jobs), desc="generating synthetic textures", unit="img") as progress,
        _render_pool() as pool,
    ):
        for (label, _, i, _, _), encoded in zip(
            jobs, pool.map(_render_jpeg, jobs, chunksize=10), strict=True
        ):
            (tmp / label / f"{label}_{i:04d}.jpg").write_bytes(encoded)
            progress.update()
    (tmp / ".complete").touch()
    try:
        os.replace(tmp, root)  # the dataset appears whole or not at all (over an empty folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (root / ".complete").exists():
            raise
        # Another process (a parallel sweep worker) put the same set there first and may be
        # reading it already: it is kept, never removed to make way for this copy.
    return root


def _render_pool() -> Executor:
    """Spawned processes, one per core this process may use, where it may start them; else
    this process alone (on one core too: a child would only add its start-up).

    Spawned, not forked: a forked child would inherit torch's thread pools mid-state. Where
    children must be forked (a worker of Hydra's joblib launcher) or may not start, the set
    is rendered here, about twice as long on 2 cores."""
    if children_context() is None and cpu_count() > 1:
        return ProcessPoolExecutor(min(cpu_count(), 8), mp_context=get_context("spawn"))
    return _InProcess()


class _InProcess(Executor):
    """An executor that maps in the calling process, for where no child process may start."""

    def map(self, fn, *iterables, timeout=None, chunksize=1):
        return map(fn, *iterables)


def _render_jpeg(job: tuple) -> bytes:
    """One image of the set as JPEG bytes: (label, class index, image index, seed, size)."""
    label, class_index, i, seed, size = job
    rng = np.random.default_rng([seed, class_index, i])
    image = render_image(label, rng, size)
    quality = int(rng.integers(35, 96))
    ok, encoded = cv2.imencode(
        ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    return encoded.tobytes()


def render_image(label: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """One RGB uint8 photo of a garment made of `label` fabric; the longer side is `size`."""
    aspect = rng.choice([1.0, 4 / 3, 3 / 4])
    height, width = (size, round(size / aspect)) if aspect > 1 else (round(size * aspect), size)
    base, ink = _fabric_colours(rng)
    canvas = int(max(height, width) * 1.5)
    pattern = PATTERNS[label](rng, canvas)  # float mask in [0, 1]: where the ink is
    pattern = _crumple(pattern, rng)
    fabric = base * (1 - pattern[..., None]) + ink * pattern[..., None]
    if label == "leopard":  # rosettes: a lighter centre inside each dark ring
        centres = PATTERNS["_rosette_centres"](pattern)
        fabric = fabric * (1 - centres[..., None]) + (0.6 * base + 0.4 * ink) * centres[..., None]
    fabric = _perspective(fabric, rng, width, height)
    fabric *= _folds(rng, width, height)[..., None]
    garment = _silhouette(rng, width, height)
    background = _background(rng, width, height)
    image = background * (1 - garment[..., None]) + fabric * garment[..., None]
    image *= _lighting(rng, width, height)[..., None]
    image += rng.normal(0, rng.uniform(1, 7), image.shape)
    if rng.random() < 0.3:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 1.2))
    return np.clip(image, 0, 255).astype(np.uint8)


def _fabric_colours(rng) -> tuple[np.ndarray, np.ndarray]:
    """Base and ink colours (RGB floats 0..255), the same distribution for every class."""
    if rng.random() < 0.3:  # natural animal-print palette: tan base, dark brown ink
        base = _hsv(rng.uniform(15, 35), rng.uniform(0.35, 0.8), rng.uniform(0.6, 0.95))
        ink = _hsv(rng.uniform(10, 30), rng.uniform(0.3, 0.8), rng.uniform(0.05, 0.3))
    else:
        base = _hsv(rng.uniform(0, 360), rng.uniform(0, 0.9), rng.uniform(0.2, 1.0))
        ink = _hsv(rng.uniform(0, 360), rng.uniform(0, 0.9), rng.uniform(0.05, 1.0))
        while np.abs(base - ink).sum() < 120:  # a pattern one cannot see is no pattern
            ink = _hsv(rng.uniform(0, 360), rng.uniform(0, 0.9), rng.uniform(0.05, 1.0))
    if rng.random() < 0.5:
        base, ink = ink, base
    return base, ink


def _hsv(hue: float, saturation: float, value: float) -> np.ndarray:
    pixel = np.array([[[hue / 2, saturation * 255, value * 255]]], np.uint8)
    return cv2.cvtColor(pixel, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def _dots(rng, canvas: int) -> np.ndarray:
    period = rng.uniform(canvas / 30, canvas / 9)
    radius = period * rng.uniform(0.15, 0.35)
    hexagonal = rng.random() < 0.6
    row_height = period * 0.866 if hexagonal else period
    y, x = np.mgrid[0:canvas, 0:canvas].astype(np.float32)
    row = np.round(y / row_height)
    shift = (row % 2) * period / 2 if hexagonal else 0
    dx = x - shift - np.round((x - shift) / period) * period
    dy = y - row * row_height
    distance = np.sqrt(dx**2 + dy**2)
    return np.clip(radius - distance + 0.5, 0, 1)


def _stripes(rng, canvas: int) -> np.ndarray:
    period = rng.uniform(canvas / 28, canvas / 8)
    duty = rng.uniform(0.2, 0.7)
    y, x = np.mgrid[0:canvas, 0:canvas].astype(np.float32)
    wave = rng.uniform(0, period / 4) * np.sin(2 * np.pi * x / rng.uniform(canvas / 3, canvas))
    phase = ((y + wave) / period) % 1.0
    stripes = np.clip((duty - phase) * period, 0, 1) * np.clip(phase * period + 1, 0, 1)
    if rng.random() < 0.3:  # a thin second stripe between the wide ones
        second = np.abs(phase - (duty + 1) / 2) * period < rng.uniform(1, period / 8 + 1)
        stripes = np.maximum(stripes, second.astype(np.float32))
    return stripes


def _leopard(rng, canvas: int) -> np.ndarray:
    """Rosettes: irregular rings broken into arcs, on a jittered grid."""
    spacing = rng.uniform(canvas / 18, canvas / 8)
    mask = np.zeros((canvas, canvas), np.uint8)
    for cy in np.arange(-spacing / 2, canvas + spacing, spacing):
        for cx in np.arange(-spacing / 2, canvas + spacing, spacing):
            centre = np.array([cx, cy]) + rng.uniform(-0.35, 0.35, 2) * spacing
            vertices = int(rng.integers(7, 12))
            angles = np.sort(rng.uniform(0, 2 * np.pi, vertices))
            radii = spacing * rng.uniform(0.18, 0.4) * rng.uniform(0.7, 1.3, vertices)
            ring = centre + np.stack([np.cos(angles), np.sin(angles)], 1) * radii[:, None]
            ring = np.round(ring).astype(np.int32)
            thickness = max(2, int(spacing * rng.uniform(0.06, 0.13)))
            # keep most sides of the ring, leaving gaps: a broken rosette
            for a, b in zip(ring, np.roll(ring, -1, axis=0), strict=True):
                if rng.random() < 0.75:
                    cv2.line(
                        mask, tuple(map(int, a)), tuple(map(int, b)), 255, thickness, cv2.LINE_AA
                    )
    return mask.astype(np.float32) / 255


def _rosette_centres(pattern: np.ndarray) -> np.ndarray:
    """Inside of the rings: pixels enclosed by ink but not ink themselves."""
    closed = cv2.morphologyEx(pattern, cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8))
    filled = cv2.GaussianBlur(closed, (0, 0), 3)
    return np.clip(filled - pattern, 0, 1) * 0.8


PATTERNS = {
    "dotted": _dots,
    "striped": _stripes,
    "leopard": _leopard,
    "_rosette_centres": _rosette_centres,
}


def _smooth_noise(rng, height: int, width: int, cells: int) -> np.ndarray:
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)


def _crumple(pattern: np.ndarray, rng) -> np.ndarray:
    """Bend the pattern as cloth bends: a smooth random displacement field."""
    size = pattern.shape[0]
    strength = rng.uniform(0, size / 40)
    dx = _smooth_noise(rng, size, size, 5) * strength
    dy = _smooth_noise(rng, size, size, 5) * strength
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    return cv2.remap(pattern, x + dx, y + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _perspective(fabric: np.ndarray, rng, width: int, height: int) -> np.ndarray:
    """Rotate, scale and tilt the fabric, then cut the view out of its middle."""
    canvas = fabric.shape[0]
    angle = rng.uniform(0, 2 * np.pi)
    scale = rng.uniform(0.6, 1.0) * canvas / 1.5 / max(width, height)
    centre = np.array([canvas / 2, canvas / 2])
    corners = []
    for cx, cy in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
        point = np.array([cx * width / 2, cy * height / 2]) * scale
        point *= 1 + rng.uniform(-0.12, 0.12, 2)  # tilt: each corner moves on its own
        rotated = [
            point[0] * np.cos(angle) - point[1] * np.sin(angle),
            point[0] * np.sin(angle) + point[1] * np.cos(angle),
        ]
        corners.append(centre + rotated)
    target = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    matrix = cv2.getPerspectiveTransform(np.float32(corners), target)
    return cv2.warpPerspective(
        fabric.astype(np.float32), matrix, (width, height), borderMode=cv2.BORDER_REFLECT
    )


def _folds(rng, width: int, height: int) -> np.ndarray:
    """Shading of folds and creases: smooth noise plus a few soft parallel waves."""
    shade = 1 + 0.12 * _smooth_noise(rng, height, width, int(rng.integers(3, 7)))
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    direction = rng.uniform(0, np.pi)
    along = x * np.cos(direction) + y * np.sin(direction)
    shade += rng.uniform(0, 0.15) * np.sin(2 * np.pi * along / rng.uniform(width / 4, width))
    return np.clip(shade, 0.5, 1.4)


def _silhouette(rng, width: int, height: int) -> np.ndarray:
    """Mask of the garment: a t-shirt, a dress, or (close-ups) the whole frame."""
    kind = rng.choice(["tshirt", "dress", "closeup"], p=[0.45, 0.3, 0.25])
    if kind == "closeup":
        return np.ones((height, width), np.float32)
    if kind == "tshirt":
        outline = [
            (0.38, 0.12),
            (0.45, 0.16),
            (0.55, 0.16),
            (0.62, 0.12),
            (0.88, 0.28),
            (0.8, 0.42),
            (0.69, 0.36),
            (0.71, 0.92),
            (0.29, 0.92),
            (0.31, 0.36),
            (0.2, 0.42),
            (0.12, 0.28),
        ]
    else:
        outline = [
            (0.4, 0.08),
            (0.46, 0.13),
            (0.54, 0.13),
            (0.6, 0.08),
            (0.66, 0.3),
            (0.62, 0.45),
            (0.82, 0.94),
            (0.18, 0.94),
            (0.38, 0.45),
            (0.34, 0.3),
        ]
    points = np.array(outline) - 0.5
    angle = rng.uniform(-0.2, 0.2)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = points @ rotation.T * rng.uniform(0.9, 1.1)
    points += 0.5 + rng.uniform(-0.06, 0.06, 2)
    pixels = np.round(points * [width, height]).astype(np.int32)
    mask = np.zeros((height, width), np.float32)
    cv2.fillPoly(mask, [pixels], 1.0, cv2.LINE_AA)
    return cv2.GaussianBlur(mask, (0, 0), 1.0)


def _background(rng, width: int, height: int) -> np.ndarray:
    if rng.random() < 0.5:  # product photo: near-white studio background
        colour = _hsv(rng.uniform(0, 360), rng.uniform(0, 0.1), rng.uniform(0.85, 1.0))
    else:
        colour = _hsv(rng.uniform(0, 360), rng.uniform(0, 0.5), rng.uniform(0.2, 0.9))
    texture = 1 + 0.05 * _smooth_noise(rng, height, width, 8)
    return np.ones((height, width, 3), np.float32) * colour * texture[..., None]


def _lighting(rng, width: int, height: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    direction = rng.uniform(0, 2 * np.pi)
    ramp = (x / width - 0.5) * np.cos(direction) + (y / height - 0.5) * np.sin(direction)
    return 1 + rng.uniform(0, 0.35) * ramp
