"""core.files.replace_file: the one atomic file replacement of the edge store, the local secret, run files,
the demo report and attach's backups."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from core.files import replace_file


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_file_gets_the_given_mode_and_an_existing_one_keeps_its_own(tmp_path: Path) -> None:
    secret, report = tmp_path / "secret.json", tmp_path / "report.html"
    replace_file(secret, b"one")
    replace_file(report, b"<html>", new_file_mode=0o644)
    assert (secret.read_bytes(), _mode(secret), _mode(report)) == (b"one", 0o600, 0o644)
    report.chmod(0o640)
    replace_file(report, b"<html>2")
    assert (report.read_bytes(), _mode(report)) == (b"<html>2", 0o640)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "secret.json"]  # no temporary left


def test_a_failed_write_leaves_the_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "store.json"
    replace_file(target, b"old")

    def refuse(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("core.files.os.replace", refuse)
    with pytest.raises(OSError, match="No space"):
        replace_file(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["store.json"]


def test_a_missing_directory_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        replace_file(tmp_path / "absent" / "x.json", b"{}")
