"""The data commands moved up beside the other entry points (`python -m src.download`, ...):
the old `python -m src.data.download ...` says so in one line instead of doing nothing."""

import subprocess
import sys
from importlib.util import find_spec

import pytest

from tests.conftest import ROOT


@pytest.mark.parametrize("name", ["download", "dedup", "relabel", "search"])
def test_the_old_command_names_the_new_one_and_fails(name):
    result = subprocess.run(
        [sys.executable, "-m", f"src.data.{name}", "root=x"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"error: this command is now python -m src.{name} (same arguments)\n"
    assert find_spec(f"src.{name}") is not None
