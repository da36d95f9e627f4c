"""Turning decoded images into the fixed-size pixels a network sees.

Everything that sees pixels (featurisation, training, evaluation, the served model) goes
through `load_pixels`, so a deployed model gets exactly the pixels training saw. Pixels stay
uint8 (H, W, 3) until they reach the model, which normalises them on its own device.
"""

import math
from dataclasses import dataclass

import cv2
import numpy as np

from src.data.images import decode_image

# Bump when a change here or in src/data/images.py changes the pixels a model sees: the
# feature cache keys on it, so features of the old pixels are not served for the new ones.
PREPROCESSING_VERSION = 1
# Padding is the ImageNet mean colour, so padded borders become zeros after normalisation.
PAD_COLOUR = (124, 116, 104)
PREPROCESSING_MODES = ("letterbox", "center_crop", "resize")


@dataclass(frozen=True)
class ImageSpec:
    """The square a network sees: its side in px, and how an image is fitted into it."""

    size: int
    preprocessing: str = "letterbox"  # one of PREPROCESSING_MODES


def letterbox(image: np.ndarray, size: int) -> np.ndarray:
    """Fit the whole image into size x size, aspect kept, padded (the original workflow's way)."""
    height, width = image.shape[:2]
    scale = size / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    resized = _resize(image, new_w, new_h)
    canvas = np.empty((size, size, 3), np.uint8)
    canvas[:] = PAD_COLOUR
    top, left = (size - new_h) // 2, (size - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = resized
    return canvas


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Scale the shorter side to `size`, then cut the central square."""
    height, width = image.shape[:2]
    scale = size / min(height, width)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    resized = _resize(image, new_w, new_h)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return np.ascontiguousarray(resized[top : top + size, left : left + size])


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """Stretch to size x size, aspect not kept."""
    return _resize(image, size, size)


def preprocess(image: np.ndarray, size: int, mode: str = "letterbox") -> np.ndarray:
    if mode == "letterbox":
        return letterbox(image, size)
    if mode == "center_crop":
        return center_crop(image, size)
    if mode == "resize":
        return resize(image, size)
    raise ValueError(f"unknown preprocessing {mode!r}; expected one of {PREPROCESSING_MODES}")


def load_pixels(data: bytes, size: int, mode: str = "letterbox") -> np.ndarray:
    """Image bytes → uint8 (size, size, 3) RGB pixels, the input of every model here."""
    return preprocess(decode_image(data, at_least=size), size, mode)


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    if (height, width) == image.shape[:2]:
        return image
    shrinking = width * height < image.shape[0] * image.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)


def augment(
    data: bytes,
    size: int,
    rng: np.random.Generator,
    crop: float = 0.9,
    jitter: float = 0.2,
    hflip: bool = False,
    scale: tuple[float, float] | None = None,
) -> np.ndarray:
    """Training pixels: a random crop brought to `size`, then brightness, contrast and
    saturation jittered by up to ±`jitter` (and mirrored, if `hflip`).

    The crop is a scale-jitter crop when `scale` is given (`scale_crop`), else the original
    workflow's: the letterboxed image, and a random square of `crop` times its side. The
    original letterboxed to twice the size, cut the square and resized it to `size`;
    letterboxing straight to size / crop and cutting a size x size square is the same
    picture with one resize instead of two, and no upscaling to twice the size first."""
    if scale is not None:
        pixels = scale_crop(data, size, rng, scale)
    else:
        if not 0 < crop <= 1:
            raise ValueError(f"crop={crop}: expected a share of the side in (0, 1]")
        frame = round(size / crop)
        boxed = letterbox(decode_image(data, at_least=frame), frame)
        top, left = rng.integers(0, frame - size + 1, size=2)
        pixels = boxed[top : top + size, left : left + size]
    if jitter > 0:
        pixels = colour_jitter(pixels, rng, jitter)
    if hflip and rng.random() < 0.5:
        pixels = pixels[:, ::-1]
    return np.ascontiguousarray(pixels)


ASPECT_RATIOS = (3 / 4, 4 / 3)  # torchvision's RandomResizedCrop: the crop's width / height


def scale_crop(
    data: bytes, size: int, rng: np.random.Generator, scale: tuple[float, float]
) -> np.ndarray:
    """torchvision's RandomResizedCrop in uint8: a crop of a random share of the image's
    area (in `scale`) and a random aspect ratio (log-uniform in ASPECT_RATIOS), at a random
    place, resized to size x size. After 10 draws that do not fit, the largest central crop
    of an allowed aspect ratio, as torchvision does.

    The JPEG is decoded reduced while the smallest crop still has `size` px of side, so a
    small crop is not cut from a decoder-shrunk image and upscaled."""
    low, high = scale
    if not 0 < low <= high <= 1:
        raise ValueError(f"scale={list(scale)}: expected 0 < low <= high <= 1")
    image = decode_image(data, at_least=math.ceil(size / math.sqrt(low)))
    height, width = image.shape[:2]
    area = height * width
    log_ratios = np.log(ASPECT_RATIOS)
    for _ in range(10):
        target = area * rng.uniform(low, high)
        ratio = math.exp(rng.uniform(*log_ratios))
        w, h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            top, left = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
            return _resize(image[top : top + h, left : left + w], size, size)
    ratio = min(max(width / height, ASPECT_RATIOS[0]), ASPECT_RATIOS[1])
    w, h = (
        (width, round(width / ratio)) if width / height < ratio else (round(height * ratio), height)
    )
    w, h = min(w, width), min(h, height)
    top, left = (height - h) // 2, (width - w) // 2
    return _resize(image[top : top + h, left : left + w], size, size)


def colour_jitter(pixels: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Brightness, contrast and saturation each scaled by a factor in [1-amount, 1+amount].

    Brightness, then contrast about the brightened image's mean grey, is one linear map of
    each channel level: a 256-entry table. Saturation is a blend with the grey image. Both
    stay in uint8 (OpenCV rounds and clips), about 20 times faster than float32 numpy."""
    brightness, contrast, saturation = rng.uniform(1 - amount, 1 + amount, size=3)
    mean = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY).mean()  # weights 0.299, 0.587, 0.114
    levels = np.arange(256, dtype=np.float32)
    table = (levels - mean) * brightness * contrast + mean * brightness
    image = cv2.LUT(pixels, np.clip(np.rint(table), 0, 255).astype(np.uint8))
    grey = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    return cv2.addWeighted(image, saturation, grey, 1 - saturation, 0)
