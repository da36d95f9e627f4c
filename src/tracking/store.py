"""Which MLflow store a command uses, and where a SQLite store's file is.

`src.run` gets its store from the config (`tracking.uri`); the small commands (register,
predict, export) choose it here, the same way: `tracking_uri=`, then MLFLOW_TRACKING_URI,
then the default beside the current folder.
"""

import os
from pathlib import Path

from src.errors import UserError

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"  # as conf/config.yaml's tracking.uri
_SQLITE = "sqlite:///"


def sqlite_file(uri: str) -> Path | None:
    """The file of a `sqlite:///` URI (`sqlite:///x.db` → x.db, relative; `sqlite:////a/x.db`
    → /a/x.db), None for any other URI."""
    return Path(uri[len(_SQLITE) :]) if uri.startswith(_SQLITE) else None


def use_tracking_store(explicit: str | None) -> str:
    """Point MLflow at the store `src.run` writes to and return its URI: `tracking_uri=` if
    given, else MLFLOW_TRACKING_URI, else `sqlite:///mlruns/mlflow.db` under the current folder.
    A missing SQLite file is an error here (opening it would create an empty store)."""
    import mlflow

    # imported here: mlflow_run imports sqlite_file from this module
    from src.tracking import mlflow_run

    chosen = explicit or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    uri = mlflow_run.resolve_uri(chosen, Path.cwd())
    database = sqlite_file(uri)
    if database is not None and not database.is_file():
        raise UserError(
            f"no MLflow store at {database}; train a model first "
            "(python -m src.run), or give tracking_uri=... (or set MLFLOW_TRACKING_URI)"
        )
    mlflow_run.check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    return uri
