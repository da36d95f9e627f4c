"""What the small entry points share (search, download, dedup, relabel, register, predict,
export): `key=value` arguments as Hydra spells them, and one-line errors. (Their tracking
store: src/tracking/store.py.)

Hydra would be a heavy way to read three or four arguments, and these tools compose no
config, change no directory and keep no outputs; so they parse their arguments here, in
one place, with the same look as `src.run`: `python -m src.predict model=... input=...`.
"""

import sys
from collections.abc import Callable
from pathlib import Path

from src.errors import UserError, exit_with_error

REQUIRED = object()  # a default that says: the user must give this key


def parse_arguments(args: list[str], defaults: dict, aliases: dict[str, str] | None = None) -> dict:
    """`["urls=a.tsv", "threads=4"]` → a dict with every key of `defaults`, each value converted
    to its default's type (bool, int, float, str; None defaults take text, `null` is None).
    Unknown, repeated, malformed and missing keys are a UserError naming the expected ones."""
    aliases = aliases or {}
    values, given = dict(defaults), set()
    for arg in args:
        key, equals, text = arg.partition("=")
        key = aliases.get(key.strip(), key.strip())
        if not equals or not key:
            raise UserError(f"expected key=value, got {arg!r} (keys: {', '.join(defaults)})")
        if key not in defaults:
            raise UserError(f"unknown key {key!r}; expected one of: {', '.join(defaults)}")
        if key in given:
            raise UserError(f"{key}= is given twice")
        given.add(key)
        values[key] = _convert(key, text.strip(), defaults[key])
    missing = [key for key, value in values.items() if value is REQUIRED]
    if missing:
        raise UserError(f"missing {' and '.join(f'{key}=...' for key in missing)}")
    return values


def at_least(values: dict, key: str, minimum: int):
    if values[key] < minimum:
        raise UserError(f"{key}={values[key]} is below {minimum}")
    return values[key]


def run_command(main: Callable[[list[str]], int | None], argv: list[str] | None = None) -> None:
    """Call `main(argv)` and exit with its status (None: 0); a UserError is one line on
    stderr and exit code 1, no traceback."""
    try:
        status = main(sys.argv[1:] if argv is None else argv) or 0
    except UserError as error:
        exit_with_error(error)
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
            raise UserError(f"missing {key}=...")
        return None
    return str(Path(text).expanduser()) if text.startswith("~") else text
