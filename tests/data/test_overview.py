"""The dataset overview: class counts, image sizes and a thumbnail grid per class, as PNGs."""

from src.data.folders import find_images
from src.data.images import read_image
from src.data.overview import write_overview
from src.data.split import split_files
from tests.conftest import write_dataset


def test_overview_writes_counts_sizes_and_one_thumbnail_grid_per_class(tmp_path):
    root = write_dataset(tmp_path / "set", {"cats": 5, "dogs": 60, "ünïcode fish": 3})
    classes, files = find_images(root)
    split = split_files(files, 0)
    sizes = {f.relpath: (48, 40) for f in files}
    (files[0].path).write_bytes(b"gone bad since the check")  # drawn as a grey tile
    written = write_overview(tmp_path / "out", classes, files, split, sizes)
    names = [p.relative_to(tmp_path / "out").as_posix() for p in written]
    assert names == [
        "class_counts.png",
        "image_sizes.png",
        "thumbnails/00_cats.png",
        "thumbnails/01_dogs.png",
        "thumbnails/02_ünïcode_fish.png",
    ]
    for path in written:
        height, width, _ = read_image(path).shape
        assert height > 200 and width > 300
    # 60 dogs: a grid of 48 (6 rows of 8) is taller than one of 5 cats (1 row)
    assert read_image(written[3]).shape[0] > 3 * read_image(written[2]).shape[0]
