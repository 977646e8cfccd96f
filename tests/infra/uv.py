"""The repository's uv (`make uv` installs the version the Makefile pins into .venv-uv), for tests that ask it about
the lock or build with it. It never downloads a Python."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UV = ROOT / ".venv-uv" / "bin" / "uv"


def uv(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Runs ``uv --no-config ARGS`` in ``cwd``; its exit code is the caller's to judge."""
    if not UV.exists():
        subprocess.run(["make", "--silent", "uv"], cwd=ROOT, check=True)
    return subprocess.run([str(UV), "--no-config", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"})
