"""A look at a dataset before any model does (the original's image browser, as pictures):
images per class and split, the distribution of image sizes, a thumbnail grid per class.

Thumbnails go through `load_pixels`, the same decoder and letterbox the model's input does.
"""

from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from src.data.folders import ImageFile  # noqa: E402
from src.data.images import ImageError  # noqa: E402
from src.data.presets import load_pixels  # noqa: E402

SPLIT_COLOURS = {"train": "tab:blue", "val": "tab:orange", "test": "tab:green"}
THUMBNAIL = 96  # px per thumbnail
CAPTION = 20  # px under each thumbnail for its caption (two short lines)
GRID_COLUMNS = 8
PER_CLASS = 48  # thumbnails per class grid: a sample spread over the class's sorted files


def write_overview(
    folder: Path,
    classes: list[str],
    files: list[ImageFile],
    split: dict[str, str],
    sizes: dict[str, tuple[int, int]],
) -> list[Path]:
    """class_counts.png, image_sizes.png and thumbnails/<class>.png in `folder`.
    `sizes`: relpath → (width, height)."""
    folder = Path(folder)
    (folder / "thumbnails").mkdir(parents=True, exist_ok=True)
    written = [
        class_counts_figure(classes, files, split, folder / "class_counts.png"),
        image_sizes_figure([sizes[f.relpath] for f in files], folder / "image_sizes.png"),
    ]
    for k, label in enumerate(classes):
        members = [f for f in files if f.label == label]
        path = folder / "thumbnails" / f"{k:02d}_{_safe(label)}.png"
        written.append(thumbnail_grid(label, members, path))
    return written


def class_counts_figure(
    classes: list[str], files: list[ImageFile], split: dict[str, str], path: Path
) -> Path:
    counts = Counter((f.label, split[f.relpath]) for f in files)
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.35 * len(classes) + 1.5)))
    left = np.zeros(len(classes))
    for side, colour in SPLIT_COLOURS.items():
        values = np.array([counts[(c, side)] for c in classes])
        ax.barh(classes, values, left=left, color=colour, label=side)
        left += values
    for y, total in enumerate(left):
        ax.text(total, y, f" {int(total)}", va="center", fontsize="small")
    ax.invert_yaxis()  # first class on top, as listed everywhere else
    ax.set_xlabel("images")
    ax.set_title(f"images per class ({len(files)} in all)", loc="left")
    ax.set_xlim(0, left.max(initial=1) * 1.12)  # room for the totals
    ax.legend(loc="lower right", bbox_to_anchor=(1, 1), ncol=3, fontsize="small", frameon=False)
    return _save(fig, path)


def image_sizes_figure(sizes: list[tuple[int, int]], path: Path) -> Path:
    """Width against height (a dot per size, its area growing with the number of images at
    that size), and a histogram of the longer side."""
    sizes = np.array(sizes, dtype=float).reshape(-1, 2)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    top = max(sizes.max(initial=1), 1) * 1.05
    if len(sizes):
        unique, counts = np.unique(sizes, axis=0, return_counts=True)
        left.scatter(unique[:, 0], unique[:, 1], s=6 + 40 * np.sqrt(counts / counts.max()) ** 2)
    left.plot([0, top], [0, top], ls="--", color="grey", lw=1, label="square")
    left.set(xlabel="width (px)", ylabel="height (px)", xlim=(0, top), ylim=(0, top))
    left.set_title(f"image sizes ({len(sizes)} images; bigger dot: more images)")
    left.legend(loc="lower right", fontsize="small")
    longer = sizes.max(axis=1) if len(sizes) else np.zeros(0)
    right.hist(longer, bins=np.linspace(0, top, 31), color="tab:blue")
    right.set(xlabel="longer side (px)", ylabel="images", xlim=(0, top))
    right.set_title(f"longer side: median {np.median(longer):.0f} px" if len(longer) else "")
    return _save(fig, path)


def thumbnail_grid(label: str, files: list[ImageFile], path: Path) -> Path:
    """Up to PER_CLASS thumbnails, evenly spread over the class's files, with their names."""
    chosen = _spread(files, PER_CLASS)
    cells = [(f.path, f.relpath.split("/", 1)[-1]) for f in chosen]
    rows = [cells[i : i + GRID_COLUMNS] for i in range(0, len(cells), GRID_COLUMNS)]
    shown = f"{len(chosen)} of {len(files)}" if len(chosen) < len(files) else f"{len(files)}"
    return thumbnail_rows(rows or [[]], f"{label}: {shown} images", path)


def thumbnail_rows(rows: list[list[tuple[Path, str]]], title: str, path: Path) -> Path:
    """Rows of captioned thumbnails, drawn as one image of tiles (one axis, not one per tile:
    fast for many). Each cell: (image file, caption); an unreadable file is a grey tile."""
    columns = max(1, max(len(row) for row in rows))
    cell_h = THUMBNAIL + CAPTION
    mosaic = np.full((len(rows) * cell_h, columns * THUMBNAIL, 3), 255, np.uint8)
    width = max(columns, 4) * 1.3  # in; wide enough for the title
    fig, ax = plt.subplots(figsize=(width, len(rows) * 1.3 * cell_h / THUMBNAIL + 0.4))
    for r, row in enumerate(rows):
        for c, (image, caption) in enumerate(row):
            top, left = r * cell_h, c * THUMBNAIL
            tile = mosaic[top : top + THUMBNAIL, left : left + THUMBNAIL]
            try:
                tile[:] = load_pixels(Path(image).read_bytes(), THUMBNAIL)
            except (OSError, ImageError):
                tile[:] = 200
            text = "\n".join(_shorten(line) for line in caption.splitlines())
            ax.text(left + THUMBNAIL / 2, top + THUMBNAIL + 1, text, ha="center", va="top", size=5)
    ax.imshow(mosaic, interpolation="nearest")
    ax.axis("off")
    ax.set_title(title, fontsize="medium")
    return _save(fig, path)


def _shorten(text: str, most: int = 26) -> str:
    return text if len(text) <= most else text[: most // 2 - 1] + "…" + text[-(most // 2) :]


def _spread(files: list[ImageFile], count: int) -> list[ImageFile]:
    if len(files) <= count:
        return list(files)
    return [files[i] for i in np.linspace(0, len(files) - 1, count).round().astype(int)]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
