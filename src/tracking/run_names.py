"""What a run is called in the MLflow UI: what it is, which job of a sweep it is and what
that job was given, and a suffix when its experiment already has a run of that name.

    svm-resnet18-224px                         python -m src.run
    svm-resnet18-224px-2                       the same command again, in the same experiment
    refine_dnn#7 dnn-resnet34-112px lr=0.0031 momentum=0.93 ...
                                               trial 7 of the study refine_dnn, its drawn values
    grid#1 svm-resnet34-224px                  job 1 of a plain grid (-m model=resnet18,resnet34)

A repeat is numbered (`-2`, `-3`, ...), not given a random word as MLflow names an unnamed
run (`bold-fox-123`): the number says that it is a repeat and which one, and sorts in order.
"""

import re

from mlflow.tracking import MlflowClient

# keys shown by `<classifier>-<model>-<size>px` itself (a sweep's values leave them out)
IN_THE_BASE_NAME = ("classifier", "model", "model.name", "resolution", "resolution.size")
LONGEST = 200  # characters of a sweep job's name; MLflow's SQL stores keep 250, a suffix fits


def base_name(classifier: str, model: str, size: int) -> str:
    return f"{classifier}-{model}-{size}px"


def sweep_job_name(job: str, base: str, values: dict) -> str:
    """`refine_dnn#7 dnn-resnet34-112px lr=0.0031 ...`: the job, what it is, and the values
    it was given, each by its key's last part, as short as still tells them apart."""
    shown = [f"{key.rsplit('.', 1)[-1]}={concise(value)}" for key, value in values.items()]
    return " ".join([job, base, *shown])[:LONGEST]


def concise(value) -> str:
    """0.0030487 → 0.003, 1.234e-05 → 1.2e-05, True → true: two significant digits tell a
    sweep's values apart, and the trial's number tells its runs apart."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.2g}"
    return str(value)


def unique_name(uri: str, experiment_id: str, name: str) -> str:
    """`name`, or `name-N` (N one more than the highest taken) when a run of the experiment
    is called `name` already. Two runs started at the same moment may both take one name."""
    prefix = name.split("'", 1)[0]  # quotes would need escaping; a wider search is as good
    runs = MlflowClient(uri).search_runs(
        [experiment_id],
        filter_string=f"attributes.run_name LIKE '{prefix}%'",
        max_results=50000,
    )
    repeat = re.compile(re.escape(name) + r"(?:-(\d+))?")
    taken = [m for r in runs if (m := repeat.fullmatch(r.info.run_name or ""))]
    if not any(m.group(1) is None for m in taken):
        return name
    return f"{name}-{max([1, *(int(m.group(1)) for m in taken if m.group(1))]) + 1}"
