"""Run `python -m edge ...` as a user would, from the repo root."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import ROOT


def run_edge(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
