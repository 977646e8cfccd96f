"""The local twin's own promises: import-format file, atomic writes, corrupt files left alone, no lost updates."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest

from edge.store import EdgeStoreError, LocalEdgeStore, open_store
from edge.store.base import RetryPolicy, StoreValidationError

IMPORT_KEYS = {"key", "value"}


def read_doc(path: Path) -> dict[str, object]:
    return json.loads(path.read_text(encoding="utf-8"))


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_file_is_the_keyvaluestore_import_format_sorted_by_key(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    store = LocalEdgeStore(path)
    store.update(puts={"r:zz-session-000001": "1767225600|auto", "k:kid-b": "Yg", "k:kid-a": "YQ", "r:é": "ü"})
    doc = read_doc(path)
    assert list(doc) == ["data"]
    assert doc["data"] == [
        {"key": "k:kid-a", "value": "YQ"},
        {"key": "k:kid-b", "value": "Yg"},
        {"key": "r:zz-session-000001", "value": "1767225600|auto"},
        {"key": "r:é", "value": "ü"},
    ]
    text = path.read_text(encoding="utf-8")
    assert text.splitlines() == [  # one entry a line, UTF-8 as is: reviewable diffs
        "{",
        '  "data": [',
        '    {"key": "k:kid-a", "value": "YQ"},',
        '    {"key": "k:kid-b", "value": "Yg"},',
        '    {"key": "r:zz-session-000001", "value": "1767225600|auto"},',
        '    {"key": "r:é", "value": "ü"}',
        "  ]",
        "}",
    ]
    store.delete("k:kid-b")
    assert [e["key"] for e in read_doc(path)["data"]] == ["k:kid-a", "r:zz-session-000001", "r:é"]
    store.update(deletes=["k:kid-a", "r:zz-session-000001", "r:é"])
    assert read_doc(path) == {"data": []}


def test_missing_file_is_an_empty_store_created_on_first_write(tmp_path: Path) -> None:
    path = tmp_path / "new.json"
    store = LocalEdgeStore(path)
    assert store.items() == {} and store.get("k:x") is None and store.usage().items == 0
    assert not path.exists()  # reads never create it
    store.delete("k:x")  # deleting from an empty store writes an (empty) store file
    assert read_doc(path) == {"data": []}
    store.put("k:x", "eA")
    assert read_doc(path) == {"data": [{"key": "k:x", "value": "eA"}]}
    assert (path.stat().st_mode & 0o777) == 0o600  # the store holds signing keys


def test_existing_permissions_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    path.write_text('{"data": []}')
    path.chmod(0o640)
    LocalEdgeStore(path).put("k:a", "YQ")
    assert (path.stat().st_mode & 0o777) == 0o640


def test_a_file_written_elsewhere_in_the_import_format_is_read(tmp_path: Path) -> None:
    path = tmp_path / "seed.json"
    path.write_text(json.dumps({"data": [{"key": "k:one", "value": "MQ"}, {"key": "r:two", "value": "2|manual"}]}))
    assert LocalEdgeStore(path).items() == {"k:one": "MQ", "r:two": "2|manual"}


def test_etag_follows_content(tmp_path: Path) -> None:
    store = LocalEdgeStore(tmp_path / "store.json")
    store.put("k:a", "YQ")
    first = store._read_state().etag
    assert store._read_state().etag == first
    result = store.put("k:b", "Yg")
    assert result.etag == store._read_state().etag != first
    assert store.put("k:b", "Yg").etag == result.etag  # same content, same ETag


@pytest.mark.parametrize("failing", ["os.replace", "os.fsync"])
def test_failed_write_leaves_the_old_file_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    path = tmp_path / "store.json"
    store = LocalEdgeStore(path)
    store.update(puts={"k:a": "YQ", "r:s": "1|auto"})
    before = path.read_bytes()

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(failing, disk_full)
    with pytest.raises(EdgeStoreError, match="No space left on device"):
        store.update(puts={"k:b": "Yg"}, deletes=["k:a"])
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert LocalEdgeStore(path).items() == {"k:a": "YQ", "r:s": "1|auto"}
    assert leftovers(tmp_path) == []  # the temporary file was cleaned up


def _crash_while_writing(path: str) -> None:
    """Child process: die abruptly (no cleanup, no exception handlers) after the new bytes hit the temp file."""
    os.fsync = lambda fd: os._exit(17)  # type: ignore[assignment]
    LocalEdgeStore(path).update(puts={"k:new": "bmV3", "r:more": "9|auto"}, deletes=["k:old"])
    os._exit(0)  # not reached


def test_crash_in_the_middle_of_a_write_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    store = LocalEdgeStore(path)
    store.update(puts={"k:old": "b2xk"})
    before = path.read_bytes()
    child = multiprocessing.get_context("fork").Process(target=_crash_while_writing, args=(str(path),))
    child.start()
    child.join(10)
    assert child.exitcode == 17  # it did die mid-write
    assert path.read_bytes() == before
    assert store.items() == {"k:old": "b2xk"}
    store.put("k:after", "YWZ0ZXI")  # the crashed writer's lock was released with its process
    assert store.items() == {"k:old": "b2xk", "k:after": "YWZ0ZXI"}


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b'{"data": [{"key": "k:a", "value": "YQ"},', "invalid JSON at line 1"),
        (b"", "invalid JSON"),
        (b'{"data": {"k:a": "YQ"}}', 'no "data" list'),
        (b'[{"key": "k:a", "value": "YQ"}]', 'no "data" list'),
        (b'{"data": [{"key": "k:a", "value": 1}]}', "data[0]"),
        (b'{"data": [{"key": "k:a", "value": "1"}, {"key": "k:a", "value": "2"}]}', "more than once"),
        (b'{"data": [{"key": "\xff", "value": ""}]}', "not UTF-8"),
    ],
    ids=["truncated", "empty", "data-not-list", "not-object", "value-not-string", "duplicate-key", "not-utf8"],
)
def test_corrupt_file_is_reported_and_never_overwritten(tmp_path: Path, content: bytes, why: str) -> None:
    path = tmp_path / "store.json"
    path.write_bytes(content)
    stat_before = path.stat()
    store = LocalEdgeStore(path)
    for action in (lambda: store.get("k:a"), store.items, store.usage, lambda: store.put("k:b", "Yg"), lambda: store.delete("k:a")):
        with pytest.raises(EdgeStoreError) as info:
            action()
        assert str(path) in str(info.value) and why in str(info.value)
    assert path.read_bytes() == content
    assert path.stat().st_mtime_ns == stat_before.st_mtime_ns
    assert leftovers(tmp_path) == []


def test_edit_without_the_lock_is_detected_not_overwritten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "store.json"
    sleeps: list[float] = []
    store = LocalEdgeStore(path, retry=RetryPolicy(max_attempts=3, sleep=sleeps.append, rng=lambda: 0.5))
    store.put("k:a", "YQ")
    real_read_state = store._read_state
    edits = iter(['{"data": [{"key": "k:a", "value": "YQ"}, {"key": "k:hand", "value": "aGFuZA"}]}'])

    def read_then_someone_edits():
        state = real_read_state()
        text = next(edits, None)
        if text is not None:
            path.write_text(text)  # a plain write, as an editor would do, between our read and our write
        return state

    monkeypatch.setattr(store, "_read_state", read_then_someone_edits)
    result = store.put("k:b", "Yg")
    assert result.retries == 1 and sleeps == [pytest.approx(0.05)]
    assert store.items() == {"k:a": "YQ", "k:hand": "aGFuZA", "k:b": "Yg"}


def _hammer(path: str, worker: int, count: int) -> None:
    store = LocalEdgeStore(path)
    for i in range(count):
        store.update(puts={f"r:w{worker}-{i:03d}": f"{i}|auto"})


def test_two_processes_writing_at_once_lose_no_update(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_hammer, args=(str(path), w, 100)) for w in (1, 2)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(60)
    assert [p.exitcode for p in workers] == [0, 0]
    items = LocalEdgeStore(path).items()
    assert len(items) == 200
    assert items == {f"r:w{w}-{i:03d}": f"{i}|auto" for w in (1, 2) for i in range(100)}
    assert leftovers(tmp_path) == []


def test_open_store_picks_the_local_twin_for_json_paths(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store.json"))
    assert isinstance(store, LocalEdgeStore) and store.path == tmp_path / "store.json"
    assert isinstance(open_store(tmp_path / "other.JSON"), LocalEdgeStore)
    for bad in ("store.txt", "s3://bucket/store.json.gz", ""):
        with pytest.raises(StoreValidationError, match=r"\.json file .* KeyValueStore ARN"):
            open_store(bad)


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    store = LocalEdgeStore(tmp_path / "nowhere" / "store.json")
    assert store.items() == {}
    with pytest.raises(EdgeStoreError, match="cannot lock edge store"):
        store.put("k:a", "YQ")
