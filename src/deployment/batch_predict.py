"""Scoring image files with a logged model: a folder (recursively) or single files → one CSV.

Worker processes read and preprocess files (training's walk, dataset and `load_pixels`)
while the model scores uint8 batches on its own device. A file that cannot be read gets a
row with its reason in the `error` column and no scores; the others are scored regardless.
"""

import csv
from pathlib import Path

import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from src.atomic import written_atomically
from src.data.folders import images_under
from src.data.images import IMAGE_EXTENSIONS
from src.data.loader import ImageDataset, make_loader
from src.data.presets import ImageSpec
from src.errors import UserError
from src.features.featurize import image_files


class WithErrors(Dataset):
    """(pixels, error) per file of `files`; `error` is "" when the file was read, else why
    not. Training drops an unreadable file (its index -1); prediction reports it in a row."""

    def __init__(self, files: ImageDataset):
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        pixels, error = self.files.read(index)
        return torch.from_numpy(pixels), error


def find_inputs(inputs: list[str]) -> list[Path]:
    """Image files under each folder (training's walk, `images_under`), and each file named
    directly, whatever its extension."""
    files = []
    for name in inputs:
        path = Path(name).expanduser()
        if path.is_dir():
            files += images_under(path)
        elif path.exists():
            files.append(path)
        else:
            raise UserError(f"input {path} does not exist")
    if not files:
        extensions = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise UserError(f"no image files in {', '.join(inputs)} (looked for {extensions})")
    return files


def predict_files(
    model, paths: list[Path], output: Path, batch_size: int, num_workers: int
) -> tuple[int, int]:
    """Write `output` (path, label, score, one probability per class, error), rows in the
    order of `paths`; returns (scored, unreadable) counts."""
    dataset = WithErrors(image_files(paths, ImageSpec(model.size, model.preprocessing)))
    loader = make_loader(dataset, batch_size, num_workers, model.device)
    columns = ["path", "label", "score", *model.classes, "error"]
    done = unreadable = 0
    with (
        written_atomically(output) as temporary,
        temporary.open("w", newline="") as handle,
        tqdm(total=len(paths), desc="predicting", unit="img") as progress,
    ):
        writer = csv.writer(handle)
        writer.writerow(columns)
        for pixels, errors in loader:
            readable = [i for i, error in enumerate(errors) if not error]
            rows = iter(())
            if readable:
                frame = model.to_frame(*model.predict_pixels(pixels[readable].numpy()))
                rows = frame.itertuples(index=False)
            for i, error in enumerate(errors):
                path = paths[done + i]
                if error:
                    writer.writerow([path, "", "", *[""] * len(model.classes), error])
                    unreadable += 1
                else:
                    label, score, *per_class = next(rows)
                    writer.writerow([path, label, *(f"{p:.6f}" for p in (score, *per_class)), ""])
            done += len(errors)
            progress.update(len(errors))
    return len(paths) - unreadable, unreadable
