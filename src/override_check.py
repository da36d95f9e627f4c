"""One line for a mistyped key or option on the command line, before anything heavy loads.

Hydra would answer `classifer=dnn` or `model=resnet99` with 6-11 lines about structs and
search paths, and only after torch, MLflow and Optuna have been imported (seconds). This
check composes the config once with the command line's group choices (Hydra's own
compose, no torch) and says what is wrong, what is close to it and what would be valid.
"""

import difflib
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, Override, RangeSweep
from hydra.errors import HydraException
from omegaconf import OmegaConf

from src.overrides import override as as_override

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
_MISSING = "\0missing"


def problem(args: list[str], conf_dir: Path = CONF_DIR) -> str | None:
    """The first mistake among `args` (Hydra overrides, already prepared), as one line."""
    try:
        overrides = OverridesParser.create().parse_overrides(args)
    except HydraException as error:
        return f"cannot read the command line: {str(error).splitlines()[0]}"
    groups = group_options(conf_dir)
    for override in overrides:
        options = groups.get(override.key_or_group)
        if options and not override.is_delete() and (message := _bad_option(override, options)):
            return message
    try:
        cfg = _compose_choices(overrides, groups, conf_dir)
    except HydraException as error:
        return str(error).splitlines()[0]
    for override in overrides:
        key = override.key_or_group
        if key in groups or key.startswith("hydra") or override.is_add() or override.is_delete():
            continue  # `+key=...` adds a key on purpose
        if override.package is None and not _has_key(cfg, key):
            return _unknown_key(override.input_line, key, cfg, groups)
    return None


def group_options(conf_dir: Path = CONF_DIR) -> dict[str, list[str]]:
    """Each config group the user chooses from, with its options: the YAML files under
    conf/<group>/ and the options code registers in Hydra's ConfigStore."""
    groups = {
        folder.name: sorted(p.stem for p in folder.glob("*.yaml"))
        for folder in sorted(conf_dir.iterdir())
        if folder.is_dir() and folder.name != "hydra"
    }
    store = ConfigStore.instance().repo
    for name in groups:
        registered = store.get(name, {})
        more = sorted({k.removesuffix(".yaml") for k in registered} - set(groups[name]))
        groups[name] += more  # the files first: they are the documented choices
    return groups


def _bad_option(override: Override, options: list[str]) -> str | None:
    value = override.value()
    chosen = [_text(v) for v in value.list] if isinstance(value, ChoiceSweep) else [value]
    if isinstance(value, list):
        chosen = [_text(v) for v in value]
    group = override.key_or_group
    for option in chosen:
        option = _text(option)
        if option is None and group == "sweep":
            continue  # sweep=null: no sweep, the default
        if not isinstance(option, str) or option not in options:
            close = difflib.get_close_matches(str(option), options, n=3, cutoff=0.5)
            hint = f"; closest: {', '.join(close)}" if close else ""
            return f"{group}={option} is not a {group} option{hint} ({_choices(options)})"
    return None


def _has_key(cfg, key: str) -> bool:
    """Does the config have this dotted key (a `???` value still counts as there)?"""
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, default=None) if parent else cfg
    return OmegaConf.is_dict(node) and leaf in list(node)  # `leaf in node` is False for ???


def _choices(options: list[str], shown: int = 12) -> str:
    """The valid options, all of them where they are few (model has about 80)."""
    if len(options) <= shown:
        return f"choices: {', '.join(options)}"
    return f"{len(options)} choices: {', '.join(options[:shown])}, ..."


def _unknown_key(line: str, key: str, cfg, groups: dict) -> str:
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    known = list(node.keys()) if OmegaConf.is_dict(node) else []
    candidates = sorted({*known, *([] if parent else groups)})
    close = difflib.get_close_matches(leaf, candidates, n=3, cutoff=0.6)
    where = f"{parent} has no key {leaf!r}" if parent else f"no key or group {leaf!r}"
    hint = f"; did you mean {' or '.join((f'{parent}.' if parent else '') + c for c in close)}?"
    valid = f" (keys: {', '.join(candidates)})" if candidates else ""
    return f"{line}: {where}" + (hint if close else "") + valid


def _compose_choices(overrides: list[Override], groups: dict, conf_dir: Path):
    """The config with the command line's plain group choices: the keys other overrides
    must name. A group swept over (`model=a,b`) is composed at its first option."""
    choices = []
    for override in overrides:
        if override.key_or_group in groups and not override.is_delete():
            value = override.value()
            if isinstance(value, ChoiceSweep):
                value = value.list[0]
            value = _text(value)
            choices.append(
                f"{override.key_or_group}=" + ("null" if value is None else f"'{value}'")
            )
    return compose_config(choices, conf_dir)


def first_job(args: list[str], conf_dir: Path = CONF_DIR):
    """The config the first job of this command line runs with: each sweep at its first
    option (`model=a,b`, `range(...)`, `choice(...)`), and an interval, which a sweeper
    samples, left at the config's value. Hydra's own settings are left out."""
    chosen = []
    for override in OverridesParser.create().parse_overrides(args):
        if override.key_or_group.startswith("hydra"):
            continue
        if not override.is_sweep_override():
            chosen.append(override.input_line)
        elif isinstance(override.value(), ChoiceSweep | RangeSweep):
            first = next(iter(override.sweep_iterator()), None)
            if first is not None:  # quoted as a sweeper's choice is (`resolution='112'`)
                value = getattr(first, "text", first)  # a QuotedString's text
                chosen.append(as_override(override.get_key_element(), value))
    return compose_config(chosen, conf_dir)


def swept_values(args: list[str]) -> list[tuple[str, object]]:
    """(key, option) for every option of a value swept over a list of them (`seed=1,2`,
    `choice(...)`, `range(...)`): the jobs after the first, checked before the first runs."""
    found = []
    for override in OverridesParser.create().parse_overrides(args):
        value = override.value()
        if isinstance(value, ChoiceSweep):
            found += [(override.key_or_group, getattr(v, "text", v)) for v in value.list]
        elif isinstance(value, RangeSweep):
            found += [(override.key_or_group, v) for v in override.sweep_iterator()]
    return found


def compose_config(overrides: list[str], conf_dir: Path = CONF_DIR):
    """The config these (plain) overrides make, composed by Hydra as `src.run` would."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(conf_dir), version_base="1.3"):
            return compose("config", overrides=overrides)
    finally:
        GlobalHydra.instance().clear()


def _text(value):
    """Hydra's QuotedString (`'448'`) as the text it holds; numbers as their text."""
    value = getattr(value, "text", value)
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
