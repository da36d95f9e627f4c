"""The order of training images per epoch, and how processes under torchrun share it."""

import numpy as np

from src.data.loader import EpochSampler

LABELS = [0] * 7 + [1] * 3 + [2] * 5


def batches(order, size):
    return [sorted(order[i : i + size]) for i in range(0, len(order), size)]


def test_one_process_sees_the_same_order_it_always_did():
    sampler = EpochSampler(LABELS, balance=False, max_images=None, seed=3)
    sampler.set_epoch(2)
    expected = np.random.default_rng([3, 2]).permutation(len(LABELS))
    assert sampler.indices().tolist() == expected.tolist()


def test_each_step_of_two_processes_sees_the_batch_one_process_would_see():
    one = EpochSampler(LABELS, balance=True, max_images=12, seed=0)
    shares = [EpochSampler(LABELS, True, 12, 0, rank=r, world_size=2) for r in (0, 1)]
    for sampler in (one, *shares):
        sampler.set_epoch(5)
    halves = [s.indices().tolist() for s in shares]
    assert len(halves[0]) == len(halves[1]) == 6
    together = [
        sorted(a + b) for a, b in zip(batches(halves[0], 2), batches(halves[1], 2), strict=True)
    ]
    assert together == batches(one.indices().tolist(), 4)  # global batch 4 = 2 x 2


def test_an_order_that_does_not_divide_is_padded_with_its_own_start():
    one = EpochSampler(LABELS, balance=False, max_images=None, seed=1)
    shares = [EpochSampler(LABELS, False, None, 1, rank=r, world_size=4) for r in range(4)]
    order = one.indices().tolist()
    taken = [i for s in shares for i in s.indices().tolist()]
    assert [len(s) for s in shares] == [4, 4, 4, 4]  # 15 images: every process takes 4 steps
    assert sorted(taken) == sorted(order + order[:1])
