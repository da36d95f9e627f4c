"""The scale-jitter crop (torchvision's RandomResizedCrop, in uint8): its shape, its share of
the image, its fallback, and that it is a crop of the image, resized."""

import math

import cv2
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from src.data.images import decode_image
from src.data.presets import ASPECT_RATIOS, augment, load_pixels, scale_crop
from tests.conftest import image_bytes


@settings(max_examples=40, deadline=None)
@given(
    width=st.integers(8, 300),
    height=st.integers(8, 300),
    low=st.floats(0.01, 1.0),
    span=st.floats(0.0, 1.0),
    size=st.integers(8, 64),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_image_and_scale_give_the_networks_square(width, height, low, span, size, seed):
    high = low + (1 - low) * span
    data = image_bytes(size=(width, height))
    pixels = augment(data, size, np.random.default_rng(seed), scale=(low, high), hflip=True)
    assert pixels.shape == (size, size, 3) and pixels.dtype == np.uint8
    assert pixels.flags.c_contiguous


def test_the_whole_of_a_square_image_is_its_one_crop_at_scale_one():
    """At scale 1 only the aspect ratio 1 fits a square image: no draw fits, and the
    fallback is the whole image, resized (what load_pixels' `resize` gives)."""
    data = image_bytes(size=(120, 120))
    crop = scale_crop(data, 48, np.random.default_rng(0), (1.0, 1.0))
    assert np.array_equal(crop, load_pixels(data, 48, "resize"))


def test_crops_cover_the_drawn_share_of_the_image_and_are_cut_from_it():
    """Each crop is a window of the image with an area share in `scale` and an aspect ratio
    in ASPECT_RATIOS, resized; found again by matching it back against the image."""
    data = image_bytes(size=(200, 160))
    low, high = 0.3, 0.6
    # decoded as the crop decodes it: reduced while its smallest crop keeps 32 px of side
    image = decode_image(data, at_least=math.ceil(32 / math.sqrt(low)))
    height, width = image.shape[:2]
    shares = []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        target = width * height * rng.uniform(low, high)
        ratio = math.exp(rng.uniform(*np.log(ASPECT_RATIOS)))
        w, h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        top, left = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
        expected = cv2.resize(
            image[top : top + h, left : left + w], (32, 32), interpolation=cv2.INTER_AREA
        )
        crop = scale_crop(data, 32, np.random.default_rng(seed), (low, high))
        assert np.array_equal(crop, expected), seed
        shares.append(w * h / (width * height))
    assert low - 0.02 <= min(shares) and max(shares) <= high + 0.02


def test_a_bad_scale_is_refused():
    import pytest

    with pytest.raises(ValueError, match="scale"):
        scale_crop(image_bytes(size=(50, 50)), 32, np.random.default_rng(0), (0.5, 0.2))
