"""Finding a dataset's images: a folder of class folders, `root/<class>/.../<image>`."""

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from src.data.images import IMAGE_EXTENSIONS
from src.errors import UserError


@dataclass(frozen=True)
class ImageFile:
    path: Path  # absolute
    relpath: str  # relative to the dataset root, with forward slashes: "<class>/.../<name>"
    label: str  # the class folder's name
    size: int  # bytes
    mtime_ns: int
    changed_ns: int = 0  # the inode's change time: set by every write, restored by no one
    digest: str = ""  # sha256 of the bytes, from the image check (prepare_dataset fills it)


def find_images(root: str | Path) -> tuple[list[str], list[ImageFile]]:
    """List the class names (sorted: class ids follow this order) and every image file.

    Files are found recursively inside each class folder by `images_under`: hidden files
    and folders, `__MACOSX` and files whose extension is not an image's (notes, thumbnail
    dbs) are ignored.
    """
    root = Path(root).expanduser()
    classes, found = list_images(root)
    files = []
    for relpath in found:
        path = (root / relpath).resolve()
        stat = path.stat()
        label = relpath.split("/", 1)[0]
        files.append(
            ImageFile(path, relpath, label, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
        )
    return classes, files


def list_images(root: Path) -> tuple[list[str], list[str]]:
    """The class names (sorted) and the relative paths of every image file in them, read
    from the folder alone (no file is opened): what `find_images` walks, and what the
    command line checks before anything heavy loads. A missing or empty root is a
    UserError naming it."""
    expected = f"expected a folder of class folders, {root}/<class>/<image files>"
    if not root.exists():
        raise UserError(f"dataset root {root} does not exist; {expected}")
    if not root.is_dir():
        raise UserError(f"dataset root {root} is not a folder; {expected}")
    classes = sorted(
        entry.name for entry in root.iterdir() if entry.is_dir() and not _hidden(entry.name)
    )
    if not classes:
        raise UserError(f"no class folders in {root}; {expected}")
    found = [
        path.relative_to(root).as_posix()
        for label in classes
        for path in images_under(root / label)
    ]
    if not found:
        raise UserError(f"no image files in the class folders of {root}")
    return classes, found


def images_under(folder: Path) -> list[Path]:
    """The image files under `folder`, recursively: a folder's files (sorted) before its
    sub-folders (sorted). Paths are `folder` joined with the rest, not resolved, so a
    relative `folder` gives relative paths. Hidden files and folders are left out, and so
    are macOS zip leftovers (`__MACOSX`) and files whose extension is not an image's.

    The one walk: training (`find_images`, per class folder) and batch prediction use it."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not _hidden(d))
        found += [
            Path(dirpath, name)
            for name in sorted(filenames)
            if not _hidden(name) and Path(name).suffix.lower() in IMAGE_EXTENSIONS
        ]
    return found


def check_classes(classes: list[str], present: set[str], root: Path) -> None:
    """A classifier needs two classes or more, each with at least one image (`present`:
    the classes that have one)."""
    empty = [c for c in classes if c not in present]
    if empty:
        raise UserError(f"class folder(s) without images in {root}: {', '.join(empty)}")
    if len(classes) < 2:
        raise UserError(
            f"only one class ({classes[0]!r}) in {root}; a classifier needs at least two"
        )


def fingerprint(files: list[ImageFile]) -> str:
    """Identify a dataset by its sorted relative paths and their contents' digests (not its
    location, nor the files' dates)."""
    if any(not f.digest for f in files):
        raise ValueError("fingerprint needs the files' digests (from prepare_dataset)")
    digest = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.relpath):
        digest.update(f"{f.relpath}\t{f.digest}\n".encode())
    return digest.hexdigest()[:16]


def _hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"
