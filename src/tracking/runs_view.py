"""The runs table a printed link opens: the metrics that compare runs, best run first.

MLflow 3's UI keeps a saved view of an experiment's runs table as an experiment tag,
`mlflow.sharedViewState.<key>`, and opens it from `?viewStateShareKey=<key>` in the URL
(its "Views" menu lists it by name). The tag holds a JSON envelope, `{"name", "createdAt",
"updatedAt", "state"}`, whose `state` is the table's state as JSON text: its search facets
(`orderByKey`, `orderByAsc`, `searchFilter`, ...) and its columns (`selectedColumns`, each
"<metrics|params|tags|attributes>.`<name>`"). Read from MLflow 3.17's UI (server/js/build:
the save-view modal and the shared-view loader), which writes the same.

Sorted by a metric, the UI lists a sweep's trials as rows of their own, not folded under
their parent run (it nests children only when sorted by start time): every trial is in
view, in order. A shared view cannot unfold parents itself (the UI drops `runsExpanded`).
"""

import json
import time

from mlflow.tracking import MlflowClient

from src.tracking.study_models import OBJECTIVE, STUDY_TAG

TAG_PREFIX = "mlflow.sharedViewState."  # MLflow UI's
URL_PARAMETER = "viewStateShareKey"  # MLflow UI's
# A refinement logs OBJECTIVE once per epoch, and its final model's value under this name
# (src/tracking/run_logging.py, log_evaluation): the table's value of OBJECTIVE is then the
# last epoch's, not the final model's
FINAL_OBJECTIVE = "val/eval_class_avg_accuracy"
TEST_METRICS = ("test/accuracy", "test/class_avg_accuracy", "test/ece")
TAGS = ("model", "classifier")  # src/pipeline.py run_tags


def save_runs_view(
    uri: str,
    experiment_id: str,
    *,
    refined: bool = False,
    study: str | None = None,
    params: tuple[str, ...] | list[str] = (),
) -> str:
    """Save the runs table view of an experiment, or of one study's trials, and return its
    key. `refined`: the runs refine the network, so the final model's objective is
    FINAL_OBJECTIVE. `params`: swept params to show as columns. The key is the same for
    the same experiment, study and objective, so reruns update one view, not add more."""
    key = view_key(study, refined)
    state = view_state(refined, study, params)
    client = MlflowClient(uri)
    tag = TAG_PREFIX + key
    saved = client.get_experiment(experiment_id).tags.get(tag)
    now = int(time.time() * 1000)
    created = now
    if saved is not None:
        try:
            envelope = json.loads(saved)
            if json.loads(envelope["state"]) == state:
                return key  # unchanged: written already
            created = int(envelope["createdAt"])
        except (ValueError, KeyError, TypeError):
            pass  # not one of ours, or damaged: written anew
    name = f"{'study ' + study if study else 'all runs'}: best first"
    envelope = {"name": name, "createdAt": created, "updatedAt": now, "state": json.dumps(state)}
    client.set_experiment_tag(experiment_id, tag, json.dumps(envelope))
    return key


def view_key(study: str | None, refined: bool) -> str:
    """`best-first`, `best-first-study-<name>`; `-refined` when sorted by FINAL_OBJECTIVE.
    Only characters an MLflow tag key and a URL take as they are."""
    key = "best-first" + (f"-study-{study}" if study else "") + ("-refined" if refined else "")
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in key)


def view_state(refined: bool, study: str | None, params) -> dict:
    """The runs table's state, as MLflow's UI saves it."""
    sort_by = FINAL_OBJECTIVE if refined else OBJECTIVE
    metrics = ([FINAL_OBJECTIVE] if refined else []) + [OBJECTIVE, *TEST_METRICS]
    # a quote would end the filter's string; such a study's view shows the whole experiment
    search = f"tags.`{STUDY_TAG}` = '{study}'" if study and "'" not in study else ""
    columns = [
        *(column("metrics", name) for name in metrics),
        *(column("params", name) for name in params),
        *(column("tags", name) for name in TAGS),
    ]
    return {
        "searchFilter": search,
        "orderByKey": column("metrics", sort_by),
        "orderByAsc": False,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "modelVersionFilter": "All Runs",
        "datasetsFilter": [],
        "selectedColumns": columns,
        # the objective first, wide enough for its name: else the UI orders metrics by name,
        # 100 px each, and at 1400 px the objective is off the first screen
        "columnOrder": columns,
        "columnWidths": {columns[0]: 200},
    }


def column(kind: str, name: str) -> str:
    """A column as the UI names it: metrics.`test/accuracy`."""
    return f"{kind}.`{name}`"


def swept_params(keys, choices: dict, config: dict) -> list[str]:
    """The param a searched key shows as: a value's own key (`classifier.lr`); for a config
    group (`resolution`), the group's value that names the chosen option (`resolution.size`
    for resolution=224). `model` and `classifier` are shown as tags already. `choices`:
    Hydra's group choices; `config`: the composed config."""
    params = []
    for key in keys:
        if key in TAGS:
            continue
        if key not in choices:
            params.append(key)
            continue
        group = config.get(key) or {}
        named = [
            f"{key}.{k}"
            for k, v in group.items()
            if not isinstance(v, dict | list) and str(v) == str(choices[key])
        ]
        params += named[:1]
    return params
