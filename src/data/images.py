"""Decoding image bytes: the one reader used by training, evaluation, featurisation and serving.

Pillow reads only the header first (format, size, transparency, frame count), so huge or
broken files are refused before any pixel is decoded. OpenCV then decodes: it is fast, and
it decodes a JPEG at 1/2, 1/4 or 1/8 scale almost for free when the target is much smaller.
Pillow decodes only what OpenCV cannot do right: transparent and animated images.
"""

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

# Parallelism comes from our own threads and loader processes. OpenCV's internal thread pool
# would compete with them, and a DataLoader worker forked while that pool holds a lock hangs.
cv2.setNumThreads(1)

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
MAX_PIXELS = 100_000_000  # larger images are refused as likely decompression bombs
MIN_SIDE = 8  # px; smaller "images" (tracking pixels, 1x1 placeholders) carry no content
BACKGROUND = (128, 128, 128)  # transparent pixels are composited on neutral grey
STRIP_PIXELS = 1 << 20  # px composited at a time on Pillow's path (4 MB as RGBA)
OPENCV_FORMATS = {"JPEG", "MPO", "PNG", "BMP", "WEBP", "TIFF"}
SIGNATURES = {  # first bytes of each format, to tell a broken image from a non-image
    b"\xff\xd8\xff": "JPEG",
    b"\x89PNG": "PNG",
    b"GIF8": "GIF",
    b"BM": "BMP",
    b"RIFF": "WEBP",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
}
# OpenCV 4.10+ decodes straight to RGB; older ones give BGR, converted after
RGB_FLAG = getattr(cv2, "IMREAD_COLOR_RGB", None)
REDUCED_FLAGS = {2: 16, 4: 32, 8: 64}  # OpenCV's IMREAD_REDUCED_* bits, by scale factor


class ImageError(ValueError):
    """The bytes are not a usable image; the message says why, in a few words."""


def read_image(path: str | Path, at_least: int = 0) -> np.ndarray:
    """Read a file into an RGB uint8 array (H, W, 3); see `decode_image`."""
    return decode_image(Path(path).read_bytes(), at_least=at_least)


def decode_image(data: bytes, at_least: int = 0) -> np.ndarray:
    """Decode image bytes into an RGB uint8 array (H, W, 3), EXIF orientation applied.

    Handles JPEG, PNG, BMP, WebP, TIFF and GIF; grayscale, 16-bit, palette and transparent
    images. `at_least`: the decoder may shrink a JPEG by 2, 4 or 8 while its shorter side
    stays at least this many pixels (the caller resizes to that size anyway).
    Raises ImageError for empty, unrecognised, truncated, tiny or oversized input, and for
    anything else the decoders raise on these bytes (see `_the_files_problem`).
    """
    probe = _open_header(data)
    width, height = probe.size
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"{width}x{height} is over the {MAX_PIXELS // 1_000_000}-megapixel limit"
            " (decompression bomb?)"
        )
    if min(width, height) < MIN_SIDE:
        raise ImageError(f"too small ({width}x{height} px)")
    with _the_files_problem(probe.format):
        if _needs_pillow(probe):
            return _decode_with_pillow(probe)
        flags = RGB_FLAG or cv2.IMREAD_COLOR
        if probe.format == "JPEG":
            flags |= _reduction_flag(min(width, height), at_least)
        image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if image is None:
        raise ImageError(f"corrupt or truncated {probe.format} data")
    return image if RGB_FLAG else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the header alone, as stored (before EXIF orientation)."""
    return _open_header(data).size


def _open_header(data: bytes) -> Image.Image:
    if not data:
        raise ImageError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as error:
        raise ImageError(f"refused as a decompression bomb ({error})") from None
    except Exception:  # whatever the header parser raises (see _the_files_problem)
        claimed = next((fmt for magic, fmt in SIGNATURES.items() if data.startswith(magic)), None)
        if claimed:  # starts like an image, but the header is cut or broken
            raise ImageError(f"corrupt or truncated {claimed} data") from None
        raise ImageError("not an image (unrecognised format)") from None


@contextmanager
def _the_files_problem(fmt: str) -> Iterator[None]:
    """Whatever a decoder raises on a file's bytes is that file's problem, raised as ImageError.

    Pillow's and OpenCV's readers are not hardened against hostile bytes: fuzzing found
    IndexError (GIF), TypeError (TIFF), struct.error and cv2.error besides the OSError and
    ValueError they document (issue 24). Any of those from one file must skip that file in a
    run and get a 400 from the server, not stop either. Only decoding runs in this block (our
    part of it, `_decode_with_pillow`, is tested against Pillow's own whole-image result);
    KeyboardInterrupt is not an Exception."""
    try:
        yield
    except ImageError:
        raise
    except MemoryError:
        raise ImageError(f"{fmt} data too large to decode (out of memory)") from None
    except Exception as error:
        raise ImageError(f"corrupt or truncated {fmt} data ({_detail(error)})") from None


def _detail(error: Exception) -> str:
    """The decoder's reason, in one short line."""
    if isinstance(error, cv2.error):  # its message is a source path and an assertion
        if error.func == "validateInputImageSize":
            return "OpenCV reads a size over its limit from the header"
        return f"OpenCV: {error.err}"
    line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return line if len(line) <= 80 else line[:77] + "..."


def _needs_pillow(probe: Image.Image) -> bool:
    transparent = probe.mode in {"RGBA", "LA", "PA", "RGBa", "La"} or "transparency" in probe.info
    animated = getattr(probe, "n_frames", 1) > 1
    return transparent or animated or probe.format not in OPENCV_FORMATS


def _decode_with_pillow(probe: Image.Image) -> np.ndarray:
    """The first frame, transparent pixels composited on BACKGROUND, a strip of rows at a
    time: whole, the RGBA copy, background and composite took 15 bytes a pixel on top of
    the decoded frame (1.9 GB for a 43-byte GIF claiming 10000x10000; issue 24). Each step
    is per pixel, so strips give the same pixels."""
    ImageOps.exif_transpose(probe, in_place=True)  # loads the first frame of an animation
    width, height = probe.size
    pixels = np.empty((height, width, 3), np.uint8)
    rows = max(1, STRIP_PIXELS // width)
    for top in range(0, height, rows):
        strip = probe.crop((0, top, width, min(top + rows, height))).convert("RGBA")
        background = Image.new("RGBA", strip.size, (*BACKGROUND, 255))
        composite = Image.alpha_composite(background, strip).convert("RGB")
        pixels[top : top + strip.height] = np.asarray(composite)
    return pixels


def _reduction_flag(shorter_side: int, at_least: int) -> int:
    if at_least <= 0:
        return 0
    for factor in (8, 4, 2):
        if shorter_side // factor >= at_least:
            return REDUCED_FLAGS[factor]
    return 0
