"""detect() on its own connection: in memory within the limit first, and spilling to a temporary folder only when
that run stops on the limit."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

import detection.detect as detect_module
from detection.detect import detect
from tools.scenarios import Viewer, playback, write_firehose

T0 = 1_767_225_600
PIRATE = "twohomessession001"


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> Path:
    reqs = playback("crowdsession00001", Viewer("100.64.1.9"), start=T0 + 5, duration=590)
    reqs += playback(PIRATE, Viewer("198.51.100.7"), start=T0 + 30, duration=540)
    reqs += playback(PIRATE, Viewer("203.0.113.9", asn=3215, country="FR"), start=T0 + 40, duration=530)
    root = tmp_path_factory.mktemp("memory") / "logs"
    write_firehose(root, reqs)
    return root


def _setting(con: duckdb.DuckDBPyConnection, name: str) -> str:
    return con.execute("SELECT current_setting(?)", [name]).fetchone()[0]


def test_the_first_run_is_in_memory_within_the_limit(logs: Path, monkeypatch) -> None:
    seen: list[tuple[str, str]] = []
    real = detect_module.run_window

    def spy(logs_input, window, config, **kwargs):
        seen.append((_setting(logs_input.con, "temp_directory"), _setting(logs_input.con, "memory_limit")))
        return real(logs_input, window, config, **kwargs)

    monkeypatch.setattr(detect_module, "run_window", spy)
    run = detect(logs, memory_limit="500MB")
    assert [v.session_id for v in run.verdicts] == [PIRATE]
    [(temp_directory, memory_limit)] = seen  # one run, nothing to spill to
    assert temp_directory == "" and memory_limit.replace(" ", "") in {"476.8MiB", "500.0MB", "500MB"}
    assert run.stats["spilled"] is False


def test_a_run_that_hits_the_limit_runs_again_spilling(logs: Path, monkeypatch) -> None:
    expected = [v.to_dict() for v in detect(logs).verdicts]
    folders: list[str] = []
    real = detect_module.run_window

    def out_of_memory_once(logs_input, window, config, **kwargs):
        folders.append(_setting(logs_input.con, "temp_directory"))
        if len(folders) == 1:
            raise duckdb.OutOfMemoryException("Out of Memory Error: could not allocate block (test)")
        return real(logs_input, window, config, **kwargs)

    monkeypatch.setattr(detect_module, "run_window", out_of_memory_once)
    run = detect(logs)
    assert [v.to_dict() for v in run.verdicts] == expected
    assert folders[0] == "" and "detect-spill-" in folders[1]
    assert not Path(folders[1]).exists()  # the spill folder is removed with the connection
    assert run.stats["spilled"] is True


def test_without_a_memory_limit_an_out_of_memory_error_is_not_retried(logs: Path, monkeypatch) -> None:
    calls: list[int] = []

    def out_of_memory(logs_input, window, config, **kwargs):
        calls.append(1)
        raise duckdb.OutOfMemoryException("Out of Memory Error: (test)")

    monkeypatch.setattr(detect_module, "run_window", out_of_memory)
    with pytest.raises(duckdb.OutOfMemoryException):
        detect(logs, memory_limit=None)
    assert calls == [1]
