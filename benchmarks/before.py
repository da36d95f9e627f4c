"""Reference points for comparisons within one run: the naive way to featurise, and the
training augmentation as it was before the benchmark issue (float32 jitter, 2x letterbox).
Not used by the pipeline."""

import numpy as np
import torch
from PIL import Image
from torch import nn

from src.data.images import decode_image
from src.data.presets import PAD_COLOUR, letterbox, resize
from src.features.backbone import IMAGENET_MEAN, IMAGENET_STD


def naive_features(resnet: nn.Module, paths, size: int) -> np.ndarray:
    """One image at a time: PIL decode and letterbox, NCHW float32 normalised in numpy, the
    model in its default (NCHW) layout, autograd recording (no inference mode)."""
    resnet.eval()
    mean, std = np.array(IMAGENET_MEAN, np.float32), np.array(IMAGENET_STD, np.float32)
    rows = []
    for path in paths:
        image = Image.open(path).convert("RGB")
        scale = size / max(image.size)
        resized = image.resize((round(image.width * scale), round(image.height * scale)))
        canvas = Image.new("RGB", (size, size), PAD_COLOUR)
        canvas.paste(resized, ((size - resized.width) // 2, (size - resized.height) // 2))
        x = (np.asarray(canvas, np.float32) / 255 - mean) / std
        rows.append(resnet(torch.from_numpy(x.transpose(2, 0, 1)).unsqueeze(0)).detach().numpy())
    return np.concatenate(rows)


def augment_before(data: bytes, size: int, rng: np.random.Generator) -> np.ndarray:
    """`augment` before the benchmark issue: letterbox to 2x, crop 0.9, resize, float jitter."""
    boxed = letterbox(decode_image(data, at_least=2 * size), 2 * size)
    side = round(0.9 * 2 * size)
    top, left = rng.integers(0, 2 * size - side + 1, size=2)
    return colour_jitter_before(resize(boxed[top : top + side, left : left + side], size), rng)


def colour_jitter_before(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    brightness, contrast, saturation = rng.uniform(0.8, 1.2, size=3)
    image = pixels.astype(np.float32) * brightness
    grey = image @ np.array([0.299, 0.587, 0.114], np.float32)
    image = (image - grey.mean()) * contrast + grey.mean()
    grey = (image @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    image = (image - grey) * saturation + grey
    return np.clip(image, 0, 255).astype(np.uint8)
