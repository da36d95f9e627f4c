"""dnn: the refined network itself (src/modes/refining.py trained it), scored on every split.

Its scores are calibrated by a temperature fitted on validation and kept with the network
(applied after its logits, so no decision changes), so served scores are the calibrated
ones (the validation ECE is then in-sample, the test ECE the honest one). The test split
is scored last, with its Grad-CAM maps in that pass.

A network retrained on train + validation (`refit`) has seen validation: validation is then
scored, and the temperature fitted, by the network trained without it (`held_out`), the one
whose epoch count was chosen there. Train and test are the served network's.
"""

import time

from src.classifiers.calibration import fit_temperature
from src.modes.job import Fitted, Job, Network

SCORED_FIRST = ("train", "val")  # the test split comes last, with its maps


def fit(job: Job, network: Network, settings) -> Fitted:
    model = network.model
    started = time.perf_counter()
    scorer = {"train": model, "val": network.held_out or model}
    logits = {s: job.outputs(scorer[s], job.paths(s), f"scoring {s}") for s in SCORED_FIRST}
    rate = sum(len(job.paths(s)) for s in SCORED_FIRST) / max(
        time.perf_counter() - started, 1e-9
    )  # the network's featurisation speed, without the test split's Grad-CAM pass
    calibration = fit_temperature(logits["val"], job.labels["val"])
    model.temperature = calibration.temperature
    logits["test"], maps = job.scores_and_maps(model, "test")
    return Fitted(
        model,
        "dnn",
        logits,
        training=network.training,
        refit=network.refit is not None,
        calibration=calibration,
        maps=maps,
        featurize_images_per_second=rate,
    )
