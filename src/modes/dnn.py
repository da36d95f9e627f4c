"""dnn: the refined network itself (src/modes/refining.py trained it), scored on every split.

Its logits are calibrated by a temperature fitted on validation and built into its last
layer, so served scores are the calibrated ones (the validation ECE is then in-sample, the
test ECE the honest one). The test split is scored last, by the calibrated network, with
its Grad-CAM maps in that pass.
"""

import time

from src.classifiers.calibration import fit_temperature, scale_linear
from src.modes.job import Fitted, Job, Network

SCORED_FIRST = ("train", "val")  # the test split comes last, with its maps


def fit(job: Job, network: Network, settings) -> Fitted:
    model = network.model
    started = time.perf_counter()
    logits = {s: job.outputs(model, job.paths(s), f"scoring {s}") for s in SCORED_FIRST}
    rate = sum(len(job.paths(s)) for s in SCORED_FIRST) / max(
        time.perf_counter() - started, 1e-9
    )  # the network's featurisation speed, without the test split's Grad-CAM pass
    temperature = fit_temperature(logits["val"], job.labels["val"])
    scale_linear(model.head[-1], temperature)
    logits = {s: scores * temperature for s, scores in logits.items()}
    logits["test"], maps = job.scores_and_maps(model, "test")
    return Fitted(
        model,
        "dnn",
        logits,
        training=network.training,
        temperature=temperature,
        maps=maps,
        featurize_images_per_second=rate,
    )
