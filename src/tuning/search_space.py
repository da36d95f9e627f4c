"""A search space written in Hydra's override grammar, as Optuna distributions.

    classifier.lr: tag(log, interval(0.0005, 0.05))   → float, log scale
    classifier.epochs: int(interval(3, 15))           → int
    classifier.batch_size: choice(8, 16, 32)          → categorical
    classifier.dropout: range(0.0, 0.75, 0.25)        → float with step (stop excluded)
    model: choice(resnet18, resnet34)                 → categorical; a config group works too
A plain value (`seed=1`) is no search: it is passed to every trial unchanged.
A space without a continuous interval is finite: `size` counts its points, and a sweep stops
once every one of them has been tried (src/tuning/sweep_loop.py).

The command line wins over `params`, as in Hydra's own Optuna sweeper: a plain value there
fixes that key (`classifier.epochs=2` stops epochs being searched), sweep grammar there
replaces the key's range. A plain value inside a searched group (`resolution.size=64` while
`resolution` is searched) applies on top of whichever option a trial draws.
"""

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
from hydra.errors import HydraException
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from src.errors import UserError


@dataclass
class SearchSpace:
    distributions: dict[str, BaseDistribution]  # searched, by override key
    fixed: list[str]  # overrides passed to every trial as they are
    # searched only where a drawn value holds: "classifier=dnn" → that mode's own keys
    conditional: dict[str, dict[str, BaseDistribution]] = field(default_factory=dict)


def parse_search_space(
    params: dict[str, str], arguments: list[str], known=None, conditional=None
) -> SearchSpace:
    """`params` (hydra.sweeper.params) and the command line's own sweep overrides.
    `known(key) -> bool` says whether a key names a config value or group: an unknown key
    is an error before any trial runs. `conditional` (hydra.sweeper.conditional): for a
    `key=value` of a searched key, the keys searched only in trials that draw that value
    (a mode's own settings: the config that value selects has them, so `known` is not asked;
    a wrong one fails its trials, each with the config's error)."""
    parser = OverridesParser.create()
    searched = {**params}
    rest = []
    for line in arguments:
        key = _parse(parser, line).get_key_element()
        if key in searched:  # the command line's own value or range replaces it, in its place
            searched[key] = line.split("=", 1)[1]
        else:
            rest.append(line)
    lines = [f"{k}={v}" for k, v in searched.items()] + rest
    distributions, fixed = {}, []
    for line in lines:
        parsed = _parse(parser, line)
        key = parsed.get_key_element()
        if known is not None and not known(parsed.key_or_group):
            raise UserError(f"search space: {key!r} is not a key or group of the config")
        if parsed.is_sweep_override():
            distributions[key] = distribution(key, parsed.value())
        else:
            fixed.append(line)
    branches = {}
    for condition, own in (conditional or {}).items():
        key, _, value = str(condition).partition("=")
        dist = distributions.get(key)
        if (
            dist is None
            or not isinstance(dist, CategoricalDistribution)
            or not any(str(c) == value for c in dist.choices)
        ):
            raise UserError(
                f"search space: conditional {condition!r} is not a searched choice's option"
            )
        branches[condition] = {}
        pinned = {line.split("=", 1)[0] for line in fixed}  # a plain value wins over a range
        for k, v in (own or {}).items():
            if k in pinned:
                continue
            parsed = _parse(parser, f"{k}={v}")
            if not parsed.is_sweep_override():
                raise UserError(f"search space: conditional {condition}: {k}={v} is no range")
            branches[condition][k] = distribution(k, parsed.value())
    return SearchSpace(distributions, fixed, branches)


def describe(params: dict, fixed: list[str]) -> str:
    """A trial's values as it runs them: each drawn value, with any plain command-line value
    that lands inside a drawn group shown beside it (`resolution=224 [resolution.size=64]`)."""
    parts = []
    for key, value in params.items():
        inside = [f for f in fixed if f.split("=", 1)[0].lstrip("+~").startswith(f"{key}.")]
        parts.append(f"{key}={value}" + (f" [{', '.join(inside)}]" if inside else ""))
    return ", ".join(parts)


def _parse(parser: OverridesParser, line: str):
    try:
        return parser.parse_override(line)
    except HydraException as error:
        raise UserError(f"search space: cannot parse {line!r} ({error})") from None


def distribution(key: str, sweep) -> BaseDistribution:
    if isinstance(sweep, ChoiceSweep):
        choices = [_plain(c) for c in sweep.list]
        if not choices:
            raise UserError(f"search space: {key} is a choice with no options")
        return CategoricalDistribution(choices)
    if isinstance(sweep, IntervalSweep):
        low, high, log = sweep.start, sweep.end, "log" in sweep.tags
        integers = isinstance(low, int) and isinstance(high, int)
        if not (low <= high if integers else low < high):  # int(interval(3, 3)) is the value 3
            raise UserError(f"search space: {key} has an empty interval ({low}, {high})")
        if log and low <= 0:
            raise UserError(f"search space: {key} is on a log scale but starts at {low} <= 0")
        if integers:
            return IntDistribution(low, high, log=log)
        return FloatDistribution(float(low), float(high), log=log)
    if isinstance(sweep, RangeSweep):
        start, stop, step = sweep.start, sweep.stop, sweep.step
        if step <= 0 or not start < stop:
            raise UserError(f"search space: {key} is an empty range({start}, {stop}, {step})")
        count = -(-(stop - start) // step)  # values start, start+step, ... below stop
        high = start + (count - 1) * step
        if all(isinstance(v, int) for v in (start, stop, step)):
            return IntDistribution(start, high, step=step)
        return FloatDistribution(float(start), float(round(high, 12)), step=float(step))
    raise UserError(f"search space: {key} uses an unsupported sweep ({type(sweep).__name__})")


def suggest(trial: optuna.Trial, space: SearchSpace) -> dict:
    """The trial's value for every searched key, then for the conditional keys of the
    values it drew."""
    values = _suggest(trial, space.distributions)
    for condition, own in space.conditional.items():
        key, _, value = condition.partition("=")
        if str(values[key]) == value:
            values.update(_suggest(trial, own))
    return values


def _suggest(trial: optuna.Trial, distributions: dict[str, BaseDistribution]) -> dict:
    values = {}
    for key, dist in distributions.items():
        if isinstance(dist, CategoricalDistribution):
            values[key] = trial.suggest_categorical(key, dist.choices)
        elif isinstance(dist, IntDistribution):
            values[key] = trial.suggest_int(key, dist.low, dist.high, step=dist.step, log=dist.log)
        else:
            step, log = dist.step, dist.log
            values[key] = trial.suggest_float(key, dist.low, dist.high, step=step, log=log)
    return values


def _plain(value):
    """Hydra's QuotedString (from `'224'`) as the text it holds."""
    return getattr(value, "text", value)


def size(space: SearchSpace) -> int | None:
    """How many distinct points the space has; None where a continuous interval makes it
    infinite, or conditional keys leave it uncounted. (Equal options of one choice are one
    point: `choice(1, 1)` has one.)"""
    if space.conditional:
        return None
    counts = [len(_indices(d)) if _finite(d) else None for d in space.distributions.values()]
    return None if None in counts else math.prod(counts)


def point(params: dict, space: SearchSpace) -> tuple | None:
    """A trial's values as a point of the space, equal for equal values however they were
    written (a choice's option by its first position, a stepped float by its step number);
    None for values that are not a point of this space (a trial of an earlier space)."""
    if set(params) != set(space.distributions):
        return None
    coordinates = []
    for key, dist in space.distributions.items():
        coordinate = _coordinate(dist, params[key])
        if coordinate is None:
            return None
        coordinates.append(coordinate)
    return tuple(coordinates)


def grid(space: SearchSpace) -> dict[str, list]:
    """Every value of each searched key, as Optuna's grid sampler takes them; a key with a
    continuous interval has none, and the grid sampler refuses it."""
    return {
        k: [_value(d, i) for i in _indices(d)] for k, d in space.distributions.items() if _finite(d)
    }


def untried_point(space: SearchSpace, taken: set, seed) -> dict | None:
    """The values of a point not in `taken` (points as `point` gives them), drawn at random
    with `seed`; None when every point is taken, or the space is infinite."""
    total = size(space)
    if total is None or len(taken) >= total:
        return None
    rng = random.Random(str(seed))
    axes = [_indices(d) for d in space.distributions.values()]
    if total <= ENUMERATE:
        free = [p for p in itertools.product(*axes) if p not in taken]
        chosen = rng.choice(free) if free else None
    else:  # too many to list: most are free
        draws = (tuple(rng.choice(axis) for axis in axes) for _ in range(1000))
        chosen = next((p for p in draws if p not in taken), None)
    if chosen is None:
        return None
    return {k: _value(d, i) for (k, d), i in zip(space.distributions.items(), chosen, strict=True)}


ENUMERATE = 100_000  # points of a finite space listed to pick an untried one; beyond, drawn


def _coordinate(dist: BaseDistribution, value):
    """A value's place in its distribution (see `point`); None when it has none there."""
    if isinstance(dist, CategoricalDistribution):
        try:
            return dist.to_internal_repr(value)  # its first position among the options
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if dist.step is None:
        return float(value) if dist.low <= value <= dist.high else None
    steps = (value - dist.low) / dist.step  # 0.30000000000000004 is step 3 of 0.1, as 0.3 is
    index = round(steps)
    inside = math.isclose(steps, index, abs_tol=1e-6) and index in _indices(dist)
    return index if inside else None


def _finite(dist: BaseDistribution) -> bool:
    return not isinstance(dist, FloatDistribution) or dist.step is not None


def _indices(dist: BaseDistribution) -> Sequence[int]:
    """The coordinates of a finite distribution's points (see `point`)."""
    if isinstance(dist, CategoricalDistribution):
        return sorted({dist.to_internal_repr(c) for c in dist.choices})
    return range(round((dist.high - dist.low) / dist.step) + 1)  # a range: never listed


def _value(dist: BaseDistribution, index: int):
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[index]
    if isinstance(dist, IntDistribution):
        return dist.low + index * dist.step
    return round(dist.low + index * dist.step, 12)
