"""The learning-rate range test: an exponential sweep, a smoothed loss that stops at
divergence, a suggestion a third of the minimum's rate, and the network left as it was."""

import math
import shlex

import numpy as np
import pytest
import torch

from src.classifiers.dnn import Refinement
from src.classifiers.lr_finder import RangeTest, find_lr, suggest
from src.classifiers.network import ImageClassifier, make_head
from src.data.prepare import SplitSettings, prepare_dataset
from src.data.presets import ImageSpec
from src.device import Compute
from src.features.backbone import build_featurizer
from tests.conftest import run_cli, write_colour_dataset
from tests.test_run import all_artifacts, only_run

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def train_split(textures):
    data = prepare_dataset(textures, SplitSettings(0.75, 0.2), 0, None, None, 2)
    files = data.subset("train")
    return [f.path for f in files], data.labels(files)


def network() -> ImageClassifier:
    torch.manual_seed(0)
    featurizer, _ = build_featurizer("resnet18", "none", 32)
    return ImageClassifier(featurizer, make_head("dnn", 512, 3, 0.5), l2_normalize=False)


def test_the_suggestion_is_a_third_of_the_rate_at_the_lowest_smoothed_loss():
    lrs = [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    assert suggest(lrs, [2.0, 1.5, 0.9, 1.2, math.inf]) == pytest.approx(1e-2 / 3)


def test_the_sweep_is_exponential_stops_at_divergence_and_leaves_the_network_as_it_was(
    train_split,
):
    model = network()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    settings = Refinement(batch_size=8, augment=True)
    test = RangeTest(start=1e-5, end=1e3, steps=40)  # far past any sane rate: must diverge
    found = find_lr(model, train_split, settings, ImageSpec(32), Compute(CPU), test)
    assert found.stopped_early and 3 < len(found.lrs) < 40
    ratios = np.diff(np.log(found.lrs))
    assert np.allclose(ratios, math.log(1e3 / 1e-5) / 39)
    assert found.smoothed[-1] > 4 * min(found.smoothed[:-1]) or not math.isfinite(
        found.smoothed[-1]
    )
    assert found.suggested == pytest.approx(found.lrs[int(np.argmin(found.smoothed))] / 3)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k].cpu()) for k in before)


FAST_FIND = ["classifier.lr_find.steps=20"]


@pytest.mark.slow  # two CLI starts and 20 + 1 epoch of training
def test_lr_find_prints_the_suggestion_and_the_command_and_lr_auto_uses_it(tmp_path):
    result = run_cli(*FAST_FIND, tmp=tmp_path, module="src.lr_find")
    assert result.returncode == 0, result.stderr[-3000:]
    client, run = only_run(tmp_path)
    suggested = float(run.data.params["lr_find.suggested"])
    assert "lr_find.png" in all_artifacts(client, run.info.run_id)
    assert f"suggested learning rate: {suggested:.3g}" in result.stdout
    command = next(line for line in result.stdout.splitlines() if "train with it:" in line)
    typed = shlex.split(command.split("train with it:", 1)[1])
    assert typed[:4] == ["python", "-m", "src.run", "classifier=dnn"]
    assert typed[-1] == f"classifier.lr={suggested:.3g}"
    assert not [o for o in typed if o.startswith("classifier.lr_find.")]  # finder-only settings

    auto_tmp = tmp_path / "auto"
    result = run_cli(
        "classifier=dnn", "classifier.lr=auto", "classifier.epochs=1", *FAST_FIND, tmp=auto_tmp
    )
    assert result.returncode == 0, result.stderr[-3000:]
    client, run = only_run(auto_tmp)
    assert run.info.status == "FINISHED" and "lr_find.png" in all_artifacts(client, run.info.run_id)
    assert float(run.data.params["lr_find.suggested"]) == suggested  # same data, seed, model
    lrs = client.get_metric_history(run.info.run_id, "lr")
    assert lrs and lrs[0].value <= suggested


LEARNABLE = [  # on the colour set (tests/conftest.py), learnable from random weights
    "classifier=dnn",
    "classifier.epochs=4",
    "classifier.patience=0",
    "classifier.lr_find.steps=60",
]


SEEDS = (0, 1, 2)  # data split, weights and training: one validation set is a noisy judge


@pytest.mark.slow  # six trainings of 4 epochs and three 60-step range tests: minutes on a CPU
def test_the_suggested_lr_learns_at_least_as_well_as_the_default_in_as_many_epochs(tmp_path):
    scores = {"0.005": [], "auto": []}  # 0.005: conf/classifier/dnn.yaml's default
    colours = write_colour_dataset(tmp_path / "colours", 40)
    for seed in SEEDS:
        for lr in scores:
            tmp = tmp_path / f"{lr}-{seed}"
            result = run_cli(
                *LEARNABLE,
                "dataset=folder",
                f"dataset.root={colours}",
                f"classifier.lr={lr}",
                f"seed={seed}",
                tmp=tmp,
                timeout=1800,
            )
            assert result.returncode == 0, result.stderr[-3000:]
            _, run = only_run(tmp)
            scores[lr].append(run.data.metrics["val/eval_class_avg_accuracy"])
            if lr == "auto":
                print(f"seed {seed}: suggested lr {run.data.params['lr_find.suggested']}")
    print(f"validation class-averaged accuracy after 4 epochs, seeds {SEEDS}: {scores}")
    assert np.mean(scores["auto"]) >= np.mean(scores["0.005"])
