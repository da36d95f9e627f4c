"""The run's data as MLflow datasets: one input per split (context train, validation or
test), named `<dataset>-<split>`, with the dataset's folder as its source and a digest of
its files' contents. Two runs on the same images show the same digests, so the runs table's
Dataset column and its Datasets filter group them; a changed, added or removed image
changes the digest of its split."""

import hashlib
import json
import time
from pathlib import Path

import mlflow
from mlflow.data.meta_dataset import MetaDataset
from mlflow.data.sources import LocalArtifactDatasetSource
from mlflow.types import ColSpec, DataType, Schema

from src.data.folders import ImageFile
from src.data.prepare import PreparedData

CONTEXTS = {"train": "train", "val": "validation", "test": "test"}  # split → MLflow's context
SCHEMA = Schema([ColSpec(DataType.string, "path"), ColSpec(DataType.string, "label")])
DUPLICATE_ROW = ("UNIQUE constraint failed", "duplicate key value")  # SQLite, PostgreSQL
RACES = 3  # tries of logging the inputs while another run creates the same dataset row


class SplitDataset(MetaDataset):
    """A split's files, as MLflow records a dataset: name, digest, source, schema and a
    profile (images per class) that the UI's dataset panel shows."""

    def __init__(self, root: Path, name: str, digest: str, profile: dict):
        self._profile = profile
        super().__init__(LocalArtifactDatasetSource(str(root)), name, digest, SCHEMA)

    @property
    def profile(self) -> dict:
        return self._profile

    def to_dict(self) -> dict[str, str]:
        return {**super().to_dict(), "profile": json.dumps(self._profile)}


def log_dataset_inputs(data: PreparedData, name: str) -> dict[str, SplitDataset]:
    """Log each split of `data` as an input of the active run; returns split → dataset, for
    the metrics computed on that split (`mlflow.log_metrics(..., dataset=...)`)."""
    digests = file_digests(data.files)
    datasets = {split: split_dataset(data, split, name, digests) for split in CONTEXTS}
    for attempt in range(RACES):
        try:
            mlflow.log_inputs(list(datasets.values()), list(CONTEXTS.values()), [None] * 3)
            return datasets
        except Exception as error:
            # Parallel trials on one store create the same dataset row at once: MLflow's
            # get-or-create is not atomic, and the second insert fails (SQLite's "UNIQUE
            # constraint failed", PostgreSQL's "duplicate key") and rolls back whole. On the
            # next try the row is there and is linked.
            if attempt + 1 == RACES or not any(m in str(error) for m in DUPLICATE_ROW):
                raise
            time.sleep(0.2 * (attempt + 1))
    return datasets


def split_dataset(
    data: PreparedData, split: str, name: str, digests: dict[str, str]
) -> SplitDataset:
    files = data.subset(split)
    per_class = {label: sum(f.label == label for f in files) for label in data.classes}
    profile = {"images": len(files), "classes": len(data.classes), "images_per_class": per_class}
    return SplitDataset(data.root, f"{name}-{split}", split_digest(files, digests), profile)


def split_digest(files: list[ImageFile], digests: dict[str, str]) -> str:
    """A digest of the files' relative paths (which hold their class) and contents: the
    same for the same images wherever the dataset's folder lies, whatever their mtimes."""
    digest = hashlib.sha256()
    for relpath in sorted(f.relpath for f in files):
        digest.update(f"{relpath}\t{digests[relpath]}\n".encode())
    return digest.hexdigest()[:16]  # MLflow keeps up to 36 characters and shows them all


def file_digests(files: list[ImageFile]) -> dict[str, str]:
    """relpath → SHA-256 of the file's bytes: the image check's (src/data/inventory.py, cached
    per file), read again only for a file that came without one."""
    return {f.relpath: f.digest or hashlib.sha256(f.path.read_bytes()).hexdigest() for f in files}
