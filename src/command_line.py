"""`key=value` arguments for the small entry points (download, dedup, relabel), as Hydra spells
them, without Hydra: these tools compose no config, change no directory and keep no outputs.
"""

import sys
from collections.abc import Callable
from pathlib import Path

from src.errors import UserError

REQUIRED = object()  # a default that says: the user must give this key


def parse_arguments(args: list[str], defaults: dict, aliases: dict[str, str] | None = None) -> dict:
    """`["urls=a.tsv", "threads=4"]` → a dict with every key of `defaults`, each value converted
    to its default's type (bool, int, float, str; None defaults take text, `null` is None)."""
    aliases = aliases or {}
    values = dict(defaults)
    for arg in args:
        key, equals, text = arg.partition("=")
        key = aliases.get(key.strip(), key.strip())
        if not equals:
            raise UserError(f"expected key=value, got {arg!r} (keys: {', '.join(defaults)})")
        if key not in defaults:
            raise UserError(f"unknown key {key!r}; expected one of: {', '.join(defaults)}")
        values[key] = _convert(key, text.strip(), defaults[key])
    missing = [key for key, value in values.items() if value is REQUIRED]
    if missing:
        raise UserError(f"missing {' and '.join(f'{key}=...' for key in missing)}")
    return values


def run_command(main: Callable[[list[str]], int]) -> None:
    """Call `main(sys.argv[1:])` and exit with its status; a UserError is one line, no traceback."""
    try:
        status = main(sys.argv[1:])
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        status = 130
    sys.exit(status)


def _convert(key: str, text: str, default):
    if isinstance(default, bool):
        if text.lower() not in ("true", "false"):
            raise UserError(f"{key} must be true or false, got {text!r}")
        return text.lower() == "true"
    if isinstance(default, int | float):
        kind = type(default)
        try:
            return kind(text)
        except ValueError:
            expected = "a whole number" if kind is int else "a number"
            raise UserError(f"{key} must be {expected}, got {text!r}") from None
    if text.lower() in ("null", "none", ""):
        if default is REQUIRED:
            raise UserError(f"{key} needs a value")
        return None
    return str(Path(text).expanduser()) if text.startswith("~") else text
