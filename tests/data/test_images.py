"""Reading images: every format and edge case a user's folder may hold."""

import io
import os
import struct
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from benchmarks.fuzz import regression_inputs, seed_images
from src.data import images
from src.data.images import BACKGROUND, ImageError, decode_image
from src.data.presets import PAD_COLOUR, center_crop, letterbox, load_pixels, resize
from tests.conftest import ROOT, image_bytes


def solid(colour, size=(40, 30), mode="RGB") -> Image.Image:
    return Image.new(mode, size, colour)


def encode(image: Image.Image, fmt: str, **save) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "WEBP", "TIFF", "GIF"])
def test_every_supported_format_decodes_to_rgb_uint8(fmt):
    pixels = decode_image(encode(solid((200, 30, 40)), fmt))
    assert pixels.shape == (30, 40, 3) and pixels.dtype == np.uint8
    assert np.allclose(pixels[15, 20], (200, 30, 40), atol=12)  # red stays red: RGB, not BGR


def test_grayscale_becomes_three_equal_channels():
    pixels = decode_image(encode(solid(90, mode="L"), "PNG"))
    assert pixels.shape == (30, 40, 3) and (pixels == 90).all()


def test_sixteen_bit_png_is_scaled_to_eight_bits():
    deep = np.full((30, 40), 50000, np.uint16)
    ok, encoded = cv2.imencode(".png", deep)
    pixels = decode_image(encoded.tobytes())
    assert pixels.dtype == np.uint8 and abs(int(pixels[0, 0, 0]) - 50000 // 257) <= 1


def test_transparent_pixels_are_composited_on_neutral_grey():
    image = solid((255, 0, 0, 255), mode="RGBA")
    image.paste((0, 0, 0, 0), (0, 0, 20, 30))  # left half fully transparent
    pixels = decode_image(encode(image, "PNG"))
    assert tuple(pixels[10, 5]) == BACKGROUND
    assert tuple(pixels[10, 35]) == (255, 0, 0)


def test_palette_image_keeps_its_colours():
    image = solid((10, 200, 30)).convert("P", palette=Image.Palette.ADAPTIVE)
    pixels = decode_image(encode(image, "PNG"))
    assert np.allclose(pixels[0, 0], (10, 200, 30), atol=3)


def test_palette_with_transparency_is_composited():
    image = solid((10, 200, 30)).convert("P")
    index = image.getpixel((0, 0))
    pixels = decode_image(encode(image, "PNG", transparency=index))
    assert tuple(pixels[0, 0]) == BACKGROUND


def test_animated_gif_gives_its_first_frame():
    frames = [solid((250, 0, 0)), solid((0, 0, 250))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    pixels = decode_image(data)
    assert pixels[0, 0, 0] > 200 and pixels[0, 0, 2] < 50


def test_exif_orientation_is_applied():
    image = solid((0, 0, 0), size=(80, 40))
    image.paste((255, 255, 255), (0, 0, 40, 40))  # left half white, as stored
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    pixels = decode_image(encode(image, "JPEG", exif=exif))
    assert pixels.shape[:2] == (80, 40)  # portrait now
    assert pixels[5, 20].mean() > 200 and pixels[75, 20].mean() < 50  # white on top


def test_exif_orientation_is_applied_with_reduced_decoding_too():
    image = solid((0, 0, 0), size=(800, 400))
    image.paste((255, 255, 255), (0, 0, 400, 400))
    exif = image.getexif()
    exif[0x0112] = 6
    pixels = decode_image(encode(image, "JPEG", exif=exif), at_least=100)
    assert pixels.shape[:2] == (200, 100)  # decoded at 1/4 scale, and rotated
    assert pixels[10, 50].mean() > 200 and pixels[190, 50].mean() < 50


def test_reduced_decoding_keeps_the_shorter_side_at_least_the_target():
    data = image_bytes(size=(1000, 700))
    assert min(decode_image(data, at_least=224).shape[:2]) >= 224
    assert decode_image(data).shape[:2] == (700, 1000)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"<html><body>404 not found</body></html>", "not an image"),
        (image_bytes("JPEG", size=(200, 200))[:700], "truncated"),
        (image_bytes("PNG", size=(200, 200))[:700], "truncated"),
        (image_bytes("PNG", size=(1, 1)), "too small"),
    ],
    ids=["zero-byte", "html", "truncated-jpeg", "truncated-png", "1x1"],
)
def test_unusable_bytes_raise_one_clear_reason(data, reason):
    with pytest.raises(ImageError, match=reason):
        decode_image(data)


def test_decompression_bomb_is_refused_before_decoding():
    bomb = encode(Image.new("1", (12_000, 10_000)), "PNG")  # 120 MP, a few kB on disk
    assert len(bomb) < 100_000
    with pytest.raises(ImageError, match="megapixel limit|decompression bomb"):
        decode_image(bomb)


@pytest.mark.parametrize("path", regression_inputs(), ids=lambda p: p.name)
def test_whatever_a_decoder_raises_on_a_files_bytes_is_an_image_error(path):
    # fuzzing found each of these raising IndexError (Pillow's GIF reader, two sites),
    # TypeError (its TIFF reader), struct.error or cv2.error: not the file's ImageError
    with pytest.raises(ImageError, match=r"^corrupt or truncated (GIF|TIFF) data \(.+\)$"):
        load_pixels(path.read_bytes(), 64)


def test_the_fuzz_corpus_seeds_are_usable_images_of_every_format():
    seeds = seed_images()
    assert len(seeds) == 8
    for path in seeds:
        assert load_pixels(path.read_bytes(), 64).shape == (64, 64, 3), path.name
    assert {Image.open(p).format for p in seeds} == {"JPEG", "PNG", "BMP", "WEBP", "TIFF", "GIF"}


def gif_screen(width: int, height: int) -> bytes:
    """43 bytes: a GIF whose screen is width x height, its one frame 1x1 and transparent."""
    header = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + bytes(3) + b"\xff" * 3
    control = b"\x21\xf9\x04\x01\x00\x00\x00\x00"  # colour 0 is transparent
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return header + control + frame + b"\x3b"


def test_a_tiny_file_claiming_a_large_image_decodes_in_a_few_bytes_a_pixel():
    # Pillow fills the whole screen; composited whole, that took 20 bytes a pixel (1.9 GB for
    # 43 bytes claiming 10000x10000, what drove the fuzzer to 2 GB); a strip at a time, 5.
    # Measured in a process of its own, by VmHWM: its address space's own peak (getrusage's
    # starts from the parent's, pytest's, across exec).
    data = gif_screen(4000, 4000)
    script = (
        "import re, sys\n"
        "from pathlib import Path\n"
        "from src.data.images import decode_image\n"
        "def peak_kb():\n"
        "    return int(re.search(r'VmHWM:\\s+(\\d+)', Path('/proc/self/status').read_text())[1])\n"
        "data = sys.stdin.buffer.read()\n"
        "decode_image(data[:6] + b'\\x08\\x00\\x08\\x00' + data[10:])  # warmed up: 8x8\n"
        "before = peak_kb()\n"
        "assert decode_image(data).shape == (4000, 4000, 3)\n"
        "print(peak_kb() - before)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], input=data, cwd=ROOT, capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    grown_kb = int(done.stdout)
    assert grown_kb * 1024 / (4000 * 4000) < 10  # bytes a pixel over the process's peak


TRANSPARENT = [("RGBA", "PNG"), ("LA", "PNG"), ("P", "PNG"), ("P", "GIF"), ("RGBA", "WEBP")]


@pytest.mark.parametrize(("mode", "fmt"), [*TRANSPARENT, ("RGBA", "TIFF")])
def test_pillow_composites_a_strip_of_rows_at_a_time_into_the_same_pixels(mode, fmt, monkeypatch):
    rng = np.random.default_rng(len(mode))
    image = Image.fromarray(rng.integers(0, 256, (23, 37, 4), dtype=np.uint8), "RGBA")
    image = image.convert(mode) if mode != "P" else image.convert("RGB").quantize(64)
    save = {"transparency": 5} if mode == "P" else {}
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated too, so that strips are cut from the transposed frame
    monkeypatch.setattr(images, "STRIP_PIXELS", 50)  # strips of 1 or 2 rows, a short one last
    for data in (encode(image, fmt, **save), encode(image, fmt, exif=exif, **save)):
        whole = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGBA")
        background = Image.new("RGBA", whole.size, (*BACKGROUND, 255))
        expected = np.asarray(Image.alpha_composite(background, whole).convert("RGB"))
        assert np.array_equal(decode_image(data), expected)


def test_opencv_refuses_what_pillow_would_have_refused_whatever_it_reads_in_the_header():
    # OpenCV parses a broken header its own way, so Pillow's check alone does not bound what
    # it allocates; its own limit (2^30 px by default) is set to ours when src is imported
    assert os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] == str(images.MAX_PIXELS)  # set by src
    bomb = encode(Image.new("1", (12_000, 10_000)), "PNG")
    script = (
        "import sys, numpy, src, cv2\n"
        "try:\n"
        "    cv2.imdecode(numpy.frombuffer(sys.stdin.buffer.read(), numpy.uint8), 1)\n"
        "except cv2.error as error:\n"
        "    print(error.err)\n"
    )
    environment = {k: v for k, v in os.environ.items() if k != "OPENCV_IO_MAX_IMAGE_PIXELS"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        input=bomb,
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        env=environment,
    )
    assert done.stdout.decode().strip() == "pixels <= CV_IO_MAX_IMAGE_PIXELS"


def test_letterbox_keeps_aspect_and_pads_with_the_mean_colour():
    image = np.full((50, 100, 3), 255, np.uint8)
    boxed = letterbox(image, 64)
    assert boxed.shape == (64, 64, 3)
    assert tuple(boxed[0, 32]) == PAD_COLOUR and tuple(boxed[63, 32]) == PAD_COLOUR
    assert (boxed[20:44, :] == 255).all()  # the image: 64 x 32, centred


def test_center_crop_and_resize_fill_the_square():
    image = np.zeros((50, 100, 3), np.uint8)
    assert center_crop(image, 32).shape == (32, 32, 3)
    assert resize(image, 32).shape == (32, 32, 3)


def test_load_pixels_is_the_same_for_the_same_bytes():
    data = image_bytes(size=(300, 200))
    assert np.array_equal(load_pixels(data, 64), load_pixels(data, 64))
    assert load_pixels(data, 64, "center_crop").shape == (64, 64, 3)


def test_training_augmentation_is_random_but_reproducible():
    from src.data.presets import augment

    data = image_bytes(size=(120, 90))
    first = augment(data, 32, np.random.default_rng(0))
    assert first.shape == (32, 32, 3) and first.dtype == np.uint8
    assert np.array_equal(first, augment(data, 32, np.random.default_rng(0)))
    assert not np.array_equal(first, augment(data, 32, np.random.default_rng(1)))
