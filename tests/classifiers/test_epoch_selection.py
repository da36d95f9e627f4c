"""Which epoch a refinement keeps (callbacks.kept_epoch): the last one within two standard
errors of the best, so a tiny validation set's noise does not pick an early, unannealed epoch."""

import math

from hypothesis import given
from hypothesis import strategies as st

from src.classifiers.callbacks import MONITOR, kept_epoch

# class-averaged accuracies as a validation set of n images gives them: multiples of 1 / n
validation = st.integers(1, 400).flatmap(
    lambda n: st.tuples(st.just(n), st.lists(st.integers(0, n), min_size=1, max_size=30))
)


def history(values):
    return [{MONITOR: v} for v in values]


def noise(best: float, n: int) -> float:
    return 2 * max(math.sqrt(best * (1 - best) / n), 1 / n)


@given(validation)
def test_the_kept_epoch_is_the_last_within_two_standard_errors_of_the_best(case):
    n, correct = case
    values = [c / n for c in correct]
    kept = kept_epoch(history(values), n)
    best = max(values)
    assert values[kept] >= best - noise(best, n)
    assert all(v < best - noise(best, n) for v in values[kept + 1 :])


@given(validation)
def test_the_kept_epoch_only_ever_moves_to_the_newest(case):
    """What lets training keep the weights as it goes: after each epoch the kept epoch is
    the one kept before, or the epoch just run (src/classifiers/dnn.py saves only then)."""
    n, correct = case
    values = [c / n for c in correct]
    for end in range(1, len(values)):
        before, now = (
            kept_epoch(history(values[:end]), n),
            kept_epoch(history(values[: end + 1]), n),
        )
        assert now in (before, end)


def test_thirty_images_do_not_pick_an_early_epoch_over_the_annealed_last():
    """The issue's case: a best epoch 1 of 5 on 30 images, two images above the last."""
    values = [0.6, 0.933, 0.833, 0.867, 0.867]
    assert kept_epoch(history(values), 30) == 4


def test_a_large_validation_set_keeps_the_best_epoch():
    values = [0.6, 0.933, 0.833, 0.867, 0.867]
    assert kept_epoch(history(values), 3000) == 1
