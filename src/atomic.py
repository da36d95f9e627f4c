"""Writing a file all at once: a hidden temporary file beside it, renamed when complete.

An interrupted or failed write leaves the previous file (or none) under the final name,
never a half-written one, and no temporary file behind. Every file the project writes for
keeps goes through here: checkpoints, caches, downloads, predictions, exports.
"""

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from src.errors import UserError


@contextmanager
def written_atomically(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it becomes `path`, else it is removed."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"output {path} is a folder; expected a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as error:
        raise UserError(f"cannot write {path} ({error.strerror or error})") from None
    os.close(handle)
    temporary = Path(temporary)
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes it private; outputs are not
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
