"""A benchmark's `--quick` smoke run, as CI runs it: its data under the test's folder."""

import os
import subprocess
import sys

from tests.conftest import ROOT


def run_quick(tmp_path, module: str, *arguments: str) -> subprocess.CompletedProcess:
    """`python -m <module> --quick <arguments>`, its data sets built under tmp_path."""
    return subprocess.run(
        [sys.executable, "-m", module, "--quick", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "IMGSWEEP_BENCH_DIR": str(tmp_path)},
    )
