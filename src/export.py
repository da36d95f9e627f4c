"""`python -m src.export model=runs:/<id>/model format=onnx output=model.onnx` exports a
logged or registered model's whole network (uint8 pixels → logits and probabilities) to
ONNX with a dynamic batch axis, and checks onnxruntime's outputs against torch's.
"""

from importlib.util import find_spec
from pathlib import Path

from src.command_line import REQUIRED, parse_arguments, run_command
from src.deployment.loading import load_image_classifier, needs_tracking_store
from src.deployment.onnx_export import TOLERANCE, export_onnx
from src.errors import UserError
from src.tracking.store import use_tracking_store

FORMATS = ("onnx",)


def export(argv: list[str]) -> None:
    arguments = parse_arguments(
        argv, {"model": REQUIRED, "format": "onnx", "output": "model.onnx", "tracking_uri": None}
    )
    if arguments["format"] not in FORMATS:
        raise UserError(f"format={arguments['format']} is not one of {', '.join(FORMATS)}")
    missing = [p for p in ("onnx", "onnxscript", "onnxruntime") if not find_spec(p)]
    if missing:
        raise UserError(
            f'ONNX export needs {", ".join(missing)}: pip install -e ".[onnx]" (or .[dev])'
        )
    if needs_tracking_store(arguments["model"]):
        use_tracking_store(arguments["tracking_uri"])
    model = load_image_classifier(arguments["model"])
    output = Path(arguments["output"])
    difference = export_onnx(model.model, model.size, model.classes, model.preprocessing, output)
    print(
        f"exported {arguments['model']} to {output}: uint8 pixels (N, {model.size}, "
        f"{model.size}, 3) → logits, probabilities over {len(model.classes)} classes "
        f"({', '.join(model.classes)})"
    )
    print(
        f"onnxruntime matches torch: max abs difference {difference:.1e} "
        f"(< {TOLERANCE:g}) on sample batches"
    )


if __name__ == "__main__":
    run_command(export)
