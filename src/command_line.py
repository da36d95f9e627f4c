"""What the smaller entry points (register, predict, export) share: `key=value` arguments in
the style of `src.run`'s Hydra overrides, the tracking store, and one-line errors.

Hydra itself would be a heavy way to read three or four arguments, so these commands parse
them here, in one place, with the same look: `python -m src.predict model=... input=...`.
"""

import os
import sys
from collections.abc import Callable
from pathlib import Path

import mlflow

from src.errors import UserError
from src.tracking import mlflow_run

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"  # as conf/config.yaml's tracking.uri


def parse_arguments(
    argv: list[str], required: tuple[str, ...], optional: dict[str, str | None]
) -> dict[str, str | None]:
    """`key=value` arguments → {key: value}, with `optional`'s defaults filled in.

    Unknown, repeated, malformed and missing keys are a UserError naming the expected ones."""
    known = (*required, *optional)
    given: dict[str, str] = {}
    for arg in argv:
        key, equals, value = arg.partition("=")
        if not equals or not key:
            raise UserError(f"argument {arg!r} is not key=value; expected keys: {_listed(known)}")
        if key not in known:
            raise UserError(f"unknown argument {key!r}; expected keys: {_listed(known)}")
        if key in given:
            raise UserError(f"{key}= is given twice")
        given[key] = os.path.expanduser(value) if value.startswith("~") else value
    missing = [key for key in required if not given.get(key)]
    if missing:
        raise UserError(f"missing {', '.join(f'{key}=...' for key in missing)}")
    return {**optional, **given}


def as_int(arguments: dict, key: str, minimum: int = 0) -> int:
    value = arguments[key]
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise UserError(f"{key}={value} is not a whole number") from None
    if number < minimum:
        raise UserError(f"{key}={value} is below {minimum}")
    return number


def use_tracking_store(explicit: str | None) -> str:
    """Point MLflow at the store `src.run` writes to and return its URI: `tracking_uri=` if
    given, else MLFLOW_TRACKING_URI, else `sqlite:///mlruns/mlflow.db` under the current folder.
    A missing SQLite file is an error here (opening it would create an empty store)."""
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


def run_command(command: Callable[[list[str]], None], argv: list[str] | None = None) -> None:
    """Run an entry point; a UserError ends it with one line on stderr and exit code 1."""
    try:
        command(sys.argv[1:] if argv is None else argv)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


def _listed(keys) -> str:
    return ", ".join(f"{key}=" for key in keys)
