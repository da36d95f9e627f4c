"""What the small entry points share (download, dedup, relabel, register, predict, export):
`key=value` arguments as Hydra spells them, the tracking store, and one-line errors.

Hydra would be a heavy way to read three or four arguments, and these tools compose no
config, change no directory and keep no outputs; so they parse their arguments here, in
one place, with the same look as `src.run`: `python -m src.predict model=... input=...`.
"""

import os
import sys
from collections.abc import Callable
from pathlib import Path

from src.errors import UserError

REQUIRED = object()  # a default that says: the user must give this key
DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"  # as conf/config.yaml's tracking.uri


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


def use_tracking_store(explicit: str | None) -> str:
    """Point MLflow at the store `src.run` writes to and return its URI: `tracking_uri=` if
    given, else MLFLOW_TRACKING_URI, else `sqlite:///mlruns/mlflow.db` under the current folder.
    A missing SQLite file is an error here (opening it would create an empty store)."""
    import mlflow

    from src.tracking import mlflow_run

    chosen = explicit or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    uri = mlflow_run.resolve_uri(chosen, Path.cwd())
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).is_file():
        raise UserError(
            f"no MLflow store at {uri[len('sqlite:///') :]}; train a model first "
            "(python -m src.run), or give tracking_uri=... (or set MLFLOW_TRACKING_URI)"
        )
    mlflow_run.check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    return uri


def run_command(main: Callable[[list[str]], int | None], argv: list[str] | None = None) -> None:
    """Call `main(argv)` and exit with its status (None: 0); a UserError is one line on
    stderr and exit code 1, no traceback."""
    try:
        status = main(sys.argv[1:] if argv is None else argv) or 0
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
            raise UserError(f"missing {key}=...")
        return None
    return str(Path(text).expanduser()) if text.startswith("~") else text
