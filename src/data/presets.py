"""Turning decoded images into the fixed-size pixels a network sees.

Everything that sees pixels (featurisation, training, evaluation, the served model) goes
through `load_pixels`, so a deployed model gets exactly the pixels training saw. Pixels stay
uint8 (H, W, 3) until they reach the model, which normalises them on its own device.
"""

import cv2
import numpy as np

from src.data.images import decode_image

# Padding is the ImageNet mean colour, so padded borders become zeros after normalisation.
PAD_COLOUR = (124, 116, 104)
PREPROCESSING_MODES = ("letterbox", "center_crop", "resize")


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
) -> np.ndarray:
    """Training pixels, as the original workflow made them: letterbox to twice the size, cut
    a random square of `crop` times its side, resize to `size`, then jitter brightness,
    contrast and saturation by up to ±`jitter` (and mirror, if `hflip`)."""
    boxed = letterbox(decode_image(data, at_least=2 * size), 2 * size)
    side = max(1, round(crop * 2 * size))
    top, left = rng.integers(0, 2 * size - side + 1, size=2)
    pixels = _resize(boxed[top : top + side, left : left + side], size, size)
    if jitter > 0:
        pixels = colour_jitter(pixels, rng, jitter)
    if hflip and rng.random() < 0.5:
        pixels = np.ascontiguousarray(pixels[:, ::-1])
    return pixels


def colour_jitter(pixels: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Brightness, contrast and saturation each scaled by a factor in [1-amount, 1+amount]."""
    brightness, contrast, saturation = rng.uniform(1 - amount, 1 + amount, size=3)
    image = pixels.astype(np.float32) * brightness
    grey = image @ np.array([0.299, 0.587, 0.114], np.float32)
    image = (image - grey.mean()) * contrast + grey.mean()
    grey = (image @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    image = (image - grey) * saturation + grey
    return np.clip(image, 0, 255).astype(np.uint8)
