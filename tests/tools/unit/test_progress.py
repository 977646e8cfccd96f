"""The long local runs' progress bars: drawn on standard error on a terminal, off in pipes and logs."""

from __future__ import annotations

import io
import sys

import pytest

from tools.detection_cli import main
from tools.progress import progress_bar


def test_the_bar_follows_the_callbacks_total_and_count(monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    with progress_bar("converting", "files", always=True) as progress:
        progress(1, 4)
        progress(4, 4)
    text = err.getvalue()
    assert "converting" in text and "4/4" in text and "100%" in text


def test_no_bar_when_standard_error_is_not_a_terminal(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--out", str(tmp_path / "c"), "--sessions", "5", "--minutes", "2", "--seed", "1"]) == 0
    assert main(["convert", "--logs", str(tmp_path / "c"), "--out", str(tmp_path / "p")]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert '"sessions": 5' in captured.out
