"""Exporting a whole `ImageClassifier` to ONNX, checked against torch with onnxruntime.

The graph takes what the served model's network takes, uint8 RGB pixels (N, size, size, 3)
after `src.data.presets.load_pixels`, and returns both `logits` (the head's raw class scores)
and `probabilities` (softmax(T * logits), T the calibration temperature: what the scoring
server reports; the label is the logits' argmax). The batch axis is
dynamic. Normalisation is inside the graph, so a client only decodes and letterboxes.
Every classifier mode exports: an SVM is a linear layer, a refined head a dropout + linear.
"""

import copy
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from src.atomic import written_atomically
from src.errors import UserError

TOLERANCE = 1e-4  # max abs difference allowed between onnxruntime's outputs and torch's
INPUT, OUTPUTS = "pixels", ("logits", "probabilities")
SAMPLE_BATCHES = (1, 3)  # not the traced batch (2): checks the batch axis is dynamic


class LogitsAndProbabilities(nn.Module):
    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.classifier(pixels).float()
        return logits, self.classifier.probabilities(logits)


def export_onnx(
    classifier: nn.Module, size: int, classes: list[str], preprocessing: str, output: Path
) -> float:
    """Write `output` (ONNX, weights inside) and return the largest difference between
    onnxruntime and torch on sample inputs; over TOLERANCE, nothing is written."""
    module = LogitsAndProbabilities(copy.deepcopy(classifier).float().cpu()).eval()
    traced = random_pixels(2, size, seed=0)
    batch = torch.export.Dim("batch", min=1)
    program = torch.onnx.export(
        module,
        (traced,),
        dynamo=True,
        input_names=[INPUT],
        output_names=list(OUTPUTS),
        dynamic_shapes=({0: batch},),
        verbose=False,
    )
    program.model.doc_string = (
        f"uint8 RGB pixels (N, {size}, {size}, 3) after {preprocessing} to {size} px → "
        f"logits and probabilities over {len(classes)} classes (metadata: classes)"
    )
    program.model.metadata_props.update(
        {"classes": json.dumps(classes), "size": str(size), "preprocessing": preprocessing}
    )
    with written_atomically(output) as temporary:
        program.save(temporary, external_data=False)
        difference = parity(module, temporary, size)
        if not difference < TOLERANCE:
            raise UserError(
                f"the ONNX export differs from torch by {difference:.2e} (over {TOLERANCE:g}); "
                f"nothing was written to {output}"
            )
    return difference


def parity(module: nn.Module, onnx_path: Path, size: int) -> float:
    """Largest abs difference between torch and onnxruntime over the sample batches."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for seed, n in enumerate(SAMPLE_BATCHES, start=1):
        pixels = random_pixels(n, size, seed)
        with torch.inference_mode():
            expected = [t.numpy() for t in module(pixels)]
        got = session.run(list(OUTPUTS), {INPUT: pixels.numpy()})
        for torch_output, onnx_output in zip(expected, got, strict=True):
            worst = max(worst, float(np.abs(torch_output - onnx_output).max()))
    return worst


def random_pixels(n: int, size: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8, generator=generator)
