"""uv.lock is what every install uses: it must agree with pyproject.toml, and the test environment must be it."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.helpers import ROOT
from tests.infra.helpers import uv


def test_the_lock_agrees_with_pyproject() -> None:
    checked = uv("lock", "--check", "--offline")
    assert checked.returncode == 0, checked.stderr


def test_a_range_changed_without_relocking_is_caught(tmp_path: Path) -> None:
    for name in ("pyproject.toml", "uv.lock", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    pyproject = tmp_path / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    assert '"PyJWT>=2.9,<3"' in text
    pyproject.write_text(text.replace('"PyJWT>=2.9,<3"', '"PyJWT>=2.10,<3"'), encoding="utf-8")
    checked = uv("lock", "--check", "--offline", cwd=tmp_path)
    assert checked.returncode != 0 and "needs to be updated" in checked.stderr, checked.stderr


def test_the_test_environment_holds_exactly_the_locked_versions() -> None:
    """Every locked package (the project's, its extras' and the dev group's) installed at the locked version."""
    checked = uv("sync", "--locked", "--all-extras", "--check", "--offline", "--no-install-project", "--inexact")
    assert checked.returncode == 0, checked.stderr
