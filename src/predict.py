"""`python -m src.predict model=models:/fashion-texture@champion input=FOLDER_OR_IMAGE
output=predictions.csv` scores image files with a logged or registered model.

`input=` is a folder (searched recursively) or an image file; `input=[a.jpg,b.jpg]` names
several. The CSV has path, label, score, one probability per class and an `error` column:
unreadable files get their reason there and no scores, and do not stop the others.
"""

from pathlib import Path

from src.command_line import REQUIRED, at_least, parse_arguments, run_command
from src.deployment.batch_predict import find_inputs, predict_files
from src.deployment.loading import load_image_classifier, needs_tracking_store
from src.device import configure, resolve_workers
from src.precision import resolve_precision
from src.tracking.store import use_tracking_store


def predict(argv: list[str]) -> None:
    arguments = parse_arguments(
        argv,
        {
            "model": REQUIRED,
            "input": REQUIRED,
            "output": "predictions.csv",
            "batch_size": 32,
            "num_workers": "auto",  # image-decoding processes, as src.run's num_workers
            "precision": None,  # fp32 | bf16 | auto; None: the run's own (its logged precision)
            "tracking_uri": None,
        },
    )
    batch_size = at_least(arguments, "batch_size", 1)
    workers = arguments["num_workers"]
    paths = find_inputs(list_of(arguments["input"]))
    if needs_tracking_store(arguments["model"]):
        use_tracking_store(arguments["tracking_uri"])
    model = load_image_classifier(arguments["model"])
    configure(model.device)
    if arguments["precision"] is not None:
        model.precision = resolve_precision(arguments["precision"], model.device)
    workers = resolve_workers(workers, model.device)
    output = Path(arguments["output"])
    scored, unreadable = predict_files(model, paths, output, batch_size, workers)
    print(
        f"{scored} image{'' if scored == 1 else 's'} scored on {model.device}"
        + (f", {unreadable} unreadable (see the error column)" if unreadable else "")
        + f": {output}"
    )


def list_of(value: str) -> list[str]:
    """`[a,b]` → ["a", "b"]; anything else is one item."""
    if value.startswith("[") and value.endswith("]"):
        return [item.strip() for item in value[1:-1].split(",") if item.strip()]
    return [value]


if __name__ == "__main__":
    run_command(predict)
