"""Command-line overrides as users type them, made valid for Hydra's grammar.

Kept free of heavy imports: the sweeper plugin uses it too, in every Hydra start-up.
"""

import os
import re

NUMERIC_GROUPS = ("resolution",)  # config groups whose options are named by numbers


def prepare_overrides(args: list[str]) -> list[str]:
    """Make two natural command lines valid Hydra overrides:
    - `resolution=448`: Hydra parses 448 as a number, and a group option must be a name, so
      numeric choices are quoted (`resolution='448'`, lists like `resolution=224,448` too);
    - `dataset.root=~/pics`: the shell does not expand `~` after `key=`, and Hydra's grammar
      rejects it, so a leading `~` in a value is expanded here."""
    numeric = re.compile(rf"^([+~]?(?:{'|'.join(NUMERIC_GROUPS)}))=(\d+(?:,\d+)*)$")
    home = re.compile(r"^([+]{0,2}[\w.]+)=(~[^,]*)$")
    prepared = []
    for arg in args:
        if match := numeric.match(arg):
            arg = f"{match.group(1)}=" + ",".join(f"'{n}'" for n in match.group(2).split(","))
        elif match := home.match(arg):
            arg = f"{match.group(1)}={os.path.expanduser(match.group(2))}"
        prepared.append(arg)
    return prepared


def as_typed(prepared: str) -> str:
    """An override as a user types it on a shell: `resolution='448'` → `resolution=448`."""
    numeric = re.compile(rf"^([+~]?(?:{'|'.join(NUMERIC_GROUPS)}))='(\d+)'$")
    return numeric.sub(r"\1=\2", prepared)


def override(key: str, value) -> str:
    """One `key=value` override for a value chosen by a sweeper, quoted where Hydra's
    grammar needs it (strings with special characters, numeric group options)."""
    if key in NUMERIC_GROUPS:
        text = f"'{value}'"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, float)):
        text = repr(value)
    elif value is None:
        text = "null"
    else:
        text = str(value)
        if not re.fullmatch(r"[\w./-]+", text) or text.lower() in ("true", "false", "null"):
            text = "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return f"{key}={text}"


# Hydra's flags that take a value (`--cfg job`), and those that bring a config of their own
VALUE_FLAGS = {"--cfg", "-c", "--package", "-p", "--info", "-i", "--experimental-rerun"}
OWN_CONFIG_FLAGS = {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd"}


def hydra_overrides(args: list[str]) -> list[str] | None:
    """The overrides among a command line's arguments (flags such as -m left out); None
    when a flag points Hydra at another config, which this project cannot check."""
    overrides, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg.split("=", 1)[0] in OWN_CONFIG_FLAGS:
            return None
        elif arg in VALUE_FLAGS:
            skip = arg not in ("--info", "-i")  # --info's value is optional; rarely given
        elif not arg.startswith("-"):
            overrides.append(arg)
    return overrides
