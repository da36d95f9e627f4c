"""`python -m src.run resume=<run id>` alone: the run's own command line comes back.

Each run records its command-line overrides (the `command` tag, a JSON list). Resuming
puts them back in front of what the user typed now, so the config is composed as it was;
a key typed again now replaces the recorded one, and src/resume.py then refuses any
difference that would change the result. Read before Hydra composes anything, with
MLflow's client only.
"""

import json
import os

from src.errors import UserError, exit_with_error
from src.override_check import compose_config


def with_logged_overrides(args: list[str], overrides: list[str]) -> list[str]:
    """`args` (the whole command line) with the resumed run's overrides put first."""
    run_id = next(o.split("=", 1)[1] for o in overrides if o.startswith("resume="))
    try:
        recorded = json.loads(_tag(run_id, _tracking_uri(overrides)) or "[]")
    except UserError as error:
        exit_with_error(error)
    typed_now = {_key(o) for o in overrides}
    kept = [o for o in recorded if _key(o) not in typed_now]
    return kept + args


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _tracking_uri(overrides: list[str]) -> str:
    """Where the run is, as src.run would find it: the command line, then the environment."""
    cfg = compose_config([o for o in overrides if o.startswith(("tracking.", "paths."))])
    return str(cfg.tracking.uri)


def _tag(run_id: str, uri: str) -> str | None:
    import mlflow
    from mlflow.tracking import MlflowClient

    from src.tracking.mlflow_run import resolve_uri

    uri = resolve_uri(uri, os.getcwd())
    try:
        return MlflowClient(uri).get_run(run_id).data.tags.get("command")
    except mlflow.exceptions.MlflowException:
        raise UserError(f"resume={run_id}: no such run in the tracking store {uri}") from None
