"""`python -m src.relabel moves=FILE root=PATH` moves images between class folders from a CSV.

    python -m src.relabel moves=relabel.csv root=data/images/fashionTexture             # show
    python -m src.relabel moves=relabel.csv root=data/images/fashionTexture apply=true  # move

Keys: `moves` (required: `path,new_label` rows, as the results page exports them), `root`
(required: the dataset folder), `apply` (false: only show what would move). The CSV's
format, its checks and the undo file: src/data/relabel.py.
"""

import sys
from pathlib import Path

from src.command_line import REQUIRED, parse_arguments, run_command
from src.data.quarantine import SET_ASIDE, quarantine_folder
from src.data.relabel import apply_moves, read_moves, undo_command, undo_file
from src.errors import UserError

DEFAULTS = {"moves": REQUIRED, "root": REQUIRED, "apply": False}


def relabel(argv: list[str]) -> int:
    options = parse_arguments(argv, DEFAULTS)
    root = Path(options["root"]).expanduser().resolve()
    moves_file = Path(options["moves"]).expanduser()
    moves, unchanged = read_moves(moves_file, root)
    print(f"{len(moves)} move(s) in {moves_file}, dataset {root}:")
    for move in moves:
        print(f"  {_shown(move.source, root)} → {_shown(move.target, root)}")
    for relpath in unchanged:
        where = relpath.split("/", 1)[0]
        where = "set aside" if where == SET_ASIDE else f"in {where}"
        print(f"  (unchanged: {relpath} is already {where})")
    if not moves:
        return 0
    if not options["apply"]:
        print("dry run, nothing moved; add apply=true to move the files")
        return 0
    undo = undo_file(moves_file)
    try:
        apply_moves(root, moves, undo)
    except UserError as error:
        if not undo.exists():  # written from the first move on
            raise
        raise UserError(f"{error}; to undo those: {undo_command(undo, root)}") from None
    except KeyboardInterrupt:
        if undo.exists():
            print(f"to undo the moves made: {undo_command(undo, root)}", file=sys.stderr)
        raise
    print(f"moved {len(moves)} file(s); to undo: {undo_command(undo, root)}")
    return 0


def _shown(relpath: str, root: Path) -> str:
    if relpath.startswith(f"{SET_ASIDE}/"):
        return f"set aside: {quarantine_folder(root).name}/{relpath[len(SET_ASIDE) + 1 :]}"
    return relpath


if __name__ == "__main__":
    run_command(relabel)
