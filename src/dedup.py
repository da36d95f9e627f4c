"""`python -m src.dedup root=PATH` sets near-duplicate images aside.

    python -m src.dedup root=data/images/fashionTexture              # report only
    python -m src.dedup root=data/images/fashionTexture apply=true   # set copies aside
    python -m src.dedup root=data/images/fashionTexture undo=true    # put them back

Keys: `root` (required), `threshold` (bits, 16: finds re-encoded and resized copies, see
`DUPLICATE_THRESHOLD`; 0 finds identical hashes only, as the original), `hash_size` (16,
the original's), `apply`, `undo`, `data_dir` (`data`: the image-check cache is shared with
`src.run`), `threads` (4). Which image of a group is kept, and where the others go:
src/data/dedup.py.
"""

from pathlib import Path

from src.command_line import REQUIRED, parse_arguments, run_command
from src.data.dedup import (
    SHEET_FILE,
    duplicates_sheet,
    find_duplicates,
    quarantine,
    report,
    restore,
)
from src.data.duplicates import DHASH_SIZE, DUPLICATE_THRESHOLD
from src.data.quarantine import LOG_FILE, quarantine_folder

DEFAULTS = {
    "root": REQUIRED,
    "threshold": DUPLICATE_THRESHOLD,  # bits still called a duplicate; measured, see there
    "hash_size": DHASH_SIZE,
    "apply": False,
    "undo": False,
    "data_dir": "data",
    "threads": 4,
}


def dedup(argv: list[str]) -> int:
    options = parse_arguments(argv, DEFAULTS, aliases={"paths.data_dir": "data_dir"})
    root = Path(options["root"]).expanduser().resolve()
    folder = quarantine_folder(root)
    if options["undo"]:
        restored, blocked = restore(root)
        print(f"moved {len(restored)} file(s) back from {folder} to {root}")
        for relpath in blocked:
            print(f"  left in quarantine: {relpath} ({root / relpath} exists again)")
        return 0
    cache = Path(options["data_dir"]) / "cache" / "image_checks"
    groups, checks = find_duplicates(
        root, options["threshold"], options["hash_size"], cache, options["threads"]
    )
    print(report(root, groups, checks, options["threshold"], options["hash_size"]))
    if not groups:
        return 0
    sheet = duplicates_sheet(root, groups, root / SHEET_FILE)
    print(f"pictured in {sheet}")
    if not options["apply"]:
        print(
            f"dry run, nothing moved; apply=true moves the files marked 'drop' to {folder}/ "
            "(nothing is deleted; undo=true moves them back)"
        )
        return 0
    moved = quarantine(root, groups)
    print(
        f"moved {len(moved)} file(s) to {folder}/ (listed in {LOG_FILE} there); "
        f"to undo: python -m src.dedup root={root} undo=true"
    )
    return 0


if __name__ == "__main__":
    run_command(dedup)
