"""Small real image sets for benchmarks, cut from scikit-image's bundled photos (no download).

In each set a class is one photo (or one texture) and an image is a random square crop of it:
training crops come from the photo's top rows, test crops from the rows below, so a test
image never overlaps a training one and a model has to recognise the photo's content, not
memorise pixels. Layout under `<root>/<name>/`:

  images/<class>/{train,test}_NNN.jpg   every image (what `dataset=folder` reads)
  test.tsv                              the test images, `class<TAB>class/test_NNN.jpg`
  val.tsv                               with val_per_class: the validation images (val_NNN)
  reference/{train,val}/<class>/        hard links, as torchvision's reference script reads
  COMPLETE                              the recipe the set was made with, written last

With `val_per_class` (the sweeps' benchmark) the set also has validation crops of its own,
under `<root>/<name>-valN/`: from the test rows' right-hand 35 % of the columns, the test
crops from the rest of those rows, so validation is drawn as test is (the same part of the
photo) and overlaps neither it nor training. Model selection needs that: a random
validation split of overlapping training crops scored 0.93 where test scored 0.43 (svm,
resnet34, photos), and validation crops from the training rows' own right-hand columns
still 0.87 against 0.48 (resnet50): the top of a photo is not its bottom. The training
crops per class stay TRAIN_PER_CLASS less val_per_class.

A set is made once per recipe and seed and reused; it is built in a scratch folder that is
renamed into place, so an interrupted build leaves nothing that looks finished.
"""

import json
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

# photos that ship inside the scikit-image wheel (skimage/data/*.png|jpg): `skin`, `lily`
# and the other fetched ones would need pooch and a network
SETS = {
    "textures": ("brick", "grass", "gravel"),  # grey, 512 px
    "photos": ("astronaut", "coffee", "chelsea"),
    "scientific": ("immunohistochemistry", "retina", "hubble_deep_field"),  # stain, fundus, sky
}
TRAIN_PER_CLASS = 50
TEST_PER_CLASS = 20
TRAIN_ROWS = 0.65  # share of a photo's rows (from the top) that training crops come from
VAL_COLUMNS = 0.35  # with val_per_class: the test rows' right-hand share of the columns
# that validation crops come from (it holds the largest crop of a square photo)
# a crop's side, as a share of the photo's shorter side: the test region's 35 % of the rows
# holds the largest crop of every photo here (all landscape or square). Chosen so that the
# reference script (resnet18 from random weights, 96 px, 5 epochs) lands near 0.8-0.95, not
# at 1.0: with 0.2-0.35 everywhere it scored 1.0 on the textures and on the scientific set
# with `cell` (grey) as its third photo; small crops make the textures a question of scale
# and leave some retina crops black like the sky's
CROP_SIDES = {"textures": (0.1, 0.35), "photos": (0.2, 0.35), "scientific": (0.1, 0.35)}
IMAGE_SIDE = 128  # px, the saved square JPEG's side
JPEG_QUALITY = 90
MARKER = "COMPLETE"


def ensure_real_datasets(
    root: Path, names=tuple(SETS), seed: int = 0, val_per_class: int = 0
) -> dict[str, Path]:
    """Each named set under `root`, made now unless a finished one of this recipe is there."""
    return {name: ensure_real_dataset(Path(root), name, seed, val_per_class) for name in names}


def ensure_real_dataset(root: Path, name: str, seed: int = 0, val_per_class: int = 0) -> Path:
    if name not in SETS:
        raise ValueError(f"unknown real dataset {name!r}; expected one of {', '.join(SETS)}")
    if not 0 <= val_per_class < TRAIN_PER_CLASS:
        raise ValueError(f"val_per_class={val_per_class}: expected 0 to {TRAIN_PER_CLASS - 1}")
    recipe = describe(name, seed, val_per_class)
    target = root / (f"{name}-val{val_per_class}" if val_per_class else name)
    if is_complete(target, recipe):
        return target
    staging = root / f".{name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    write_dataset(staging, name, seed, val_per_class)
    marker = staging / MARKER
    marker.with_suffix(".tmp").write_text(json.dumps(recipe, indent=2))
    os.replace(marker.with_suffix(".tmp"), marker)
    if is_complete(target, recipe):  # another process finished first
        shutil.rmtree(staging)
        return target
    shutil.rmtree(target, ignore_errors=True)  # an older recipe's set, or a broken one
    os.rename(staging, target)
    return target


def describe(name: str, seed: int, val_per_class: int = 0) -> dict:
    """Everything the images depend on: a set made with another recipe is made again."""
    validation = {
        "val_per_class": val_per_class,
        "val_columns": VAL_COLUMNS,
        "val_from": "test rows",
    }
    return {
        **(validation if val_per_class else {}),  # the sets without one keep their recipe
        "photos": list(SETS[name]),
        "seed": seed,
        "train_per_class": TRAIN_PER_CLASS,
        "test_per_class": TEST_PER_CLASS,
        "train_rows": TRAIN_ROWS,
        "crop_side": list(CROP_SIDES[name]),
        "image_side": IMAGE_SIDE,
        "jpeg_quality": JPEG_QUALITY,
    }


def is_complete(folder: Path, recipe: dict) -> bool:
    try:
        return json.loads((folder / MARKER).read_text()) == recipe
    except (OSError, ValueError):
        return False


def write_dataset(folder: Path, name: str, seed: int, val_per_class: int = 0) -> None:
    lists = {"test": [], "val": []}
    for index, photo in enumerate(SETS[name]):
        pixels = load_photo(photo)
        # a generator per class: one photo's crops do not depend on the others'
        rng = np.random.default_rng([seed, index])
        split_row = round(TRAIN_ROWS * pixels.shape[0])
        regions = {
            "train": (pixels[:split_row], TRAIN_PER_CLASS, "train"),
            "test": (pixels[split_row:], TEST_PER_CLASS, "val"),
        }
        if val_per_class:  # the test rows' right-hand columns hold validation's crops
            split_column = round((1 - VAL_COLUMNS) * pixels.shape[1])
            bottom = pixels[split_row:]
            regions["train"] = (pixels[:split_row], TRAIN_PER_CLASS - val_per_class, "train")
            regions["test"] = (bottom[:, :split_column], TEST_PER_CLASS, "val")
            regions["val"] = (bottom[:, split_column:], val_per_class, "train")
        for side, (region, count, reference_side) in regions.items():
            images = folder / "images" / photo
            linked = folder / "reference" / reference_side / photo
            images.mkdir(parents=True, exist_ok=True)
            linked.mkdir(parents=True, exist_ok=True)
            crops = random_crops(region, count, CROP_SIDES[name], min(pixels.shape[:2]), rng)
            for i, crop in enumerate(crops):
                path = images / f"{side}_{i:03d}.jpg"
                save_jpeg(crop, path)
                link(path, linked / path.name)
                if side in lists:
                    lists[side].append(f"{photo}\t{photo}/{path.name}\n")
    (folder / "test.tsv").write_text("".join(lists["test"]))
    if val_per_class:
        (folder / "val.tsv").write_text("".join(lists["val"]))


def load_photo(photo: str) -> np.ndarray:
    """A bundled photo as H x W x 3 uint8 (grey ones repeated over the channels)."""
    from skimage import data  # only here: a test-and-benchmark dependency

    pixels = np.asarray(getattr(data, photo)())
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    return np.ascontiguousarray(pixels[..., :3]).astype(np.uint8)


def random_crops(region: np.ndarray, count: int, sides, shorter: int, rng) -> list[np.ndarray]:
    """`count` square crops at random positions inside `region`, each side a random share
    (between the two `sides`) of the photo's `shorter` side, as far as the region allows."""
    height, width = region.shape[:2]
    crops = []
    for _ in range(count):
        side = min(round(rng.uniform(*sides) * shorter), height, width)
        top = rng.integers(0, height - side + 1)
        left = rng.integers(0, width - side + 1)
        crops.append(region[top : top + side, left : left + side])
    return crops


def save_jpeg(crop: np.ndarray, path: Path) -> None:
    image = Image.fromarray(crop).resize((IMAGE_SIDE, IMAGE_SIDE), Image.Resampling.LANCZOS)
    image.convert("RGB").save(path, "JPEG", quality=JPEG_QUALITY)


def link(source: Path, target: Path) -> None:
    """A hard link (no second copy of the bytes), a copy where the file system has none."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m benchmarks.real_datasets", description=__doc__)
    parser.add_argument("root", type=Path, help="where the sets go")
    parser.add_argument("--datasets", default=",".join(SETS), help="comma-separated names")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for name, folder in ensure_real_datasets(
        args.root, args.datasets.split(","), args.seed
    ).items():
        print(f"{name}: {folder}")


if __name__ == "__main__":
    main()
