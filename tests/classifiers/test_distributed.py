"""The one-process stand-in for torchrun's ranks, and settings refused before training."""

import numpy as np
import pytest
import torch
from torch import nn

from src.classifiers.distributed import SINGLE, Ranks
from src.errors import UserError


def test_one_process_changes_nothing():
    model = nn.Linear(2, 2)
    rows = np.arange(6.0).reshape(3, 2)
    assert SINGLE.wrap(model, torch.device("cpu"), sync_batchnorm=True) is model
    assert SINGLE.sum(1.5, 2) == (1.5, 2)
    assert SINGLE.broadcast("stop") == "stop"
    assert SINGLE.shard([1, 2, 3]) == [1, 2, 3]
    assert SINGLE.gather_rows(rows) is rows
    assert SINGLE.batch_share(16) == 16


def test_each_process_scores_every_nth_item():
    assert Ranks(rank=1, world_size=3).shard(list(range(8))) == [1, 4, 7]


def test_a_global_batch_that_does_not_divide_among_the_processes_is_refused():
    assert Ranks(rank=0, world_size=4).batch_share(16) == 4
    with pytest.raises(UserError, match="batch_size=10 is the global batch; .* 4 processes"):
        Ranks(rank=0, world_size=4).batch_share(10)


def test_sync_batchnorm_on_the_cpu_is_refused_with_what_to_do_instead():
    with pytest.raises(UserError, match="needs CUDA GPUs .* classifier.freeze_backbone=true"):
        Ranks(rank=0, world_size=2).wrap(nn.BatchNorm2d(3), torch.device("cpu"), True)
