"""`python -m rotation rotate` end to end, as an operator runs it: bootstrap, sign with `python -m edge sign
--key-file F`, check with the real edge function (`python -m edge check`), rotate, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge.store import LocalEdgeStore
from rotation.keyring import RotationPolicy, parse_secret_value
from rotation.secrets import LocalSecretFile
from rotation.steps import KeyRotation
from tests.helpers import ROOT

T0 = 1_767_225_600
HOUR = 3600


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def rotate(secret: Path, store: Path, now: int, *extra: str) -> subprocess.CompletedProcess[str]:
    return run("rotation", "rotate", "--secret-file", str(secret), "--store", str(store), "--now", str(now), *extra)


def printed(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)


def sign(secret: Path, now: int, ttl: int = HOUR) -> str:
    result = run("edge", "sign", "--key-file", str(secret), "--ttl", str(ttl), "--now", str(now),
                 "https://cdn.example.com/live/ch1/master.m3u8")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def check(store: Path, url: str, now: int) -> tuple[int, dict[str, str]]:
    result = run("edge", "check", "--store", str(store), "--now", str(now), url)
    return result.returncode, json.loads(result.stdout)


def test_bootstrap_sign_rotate_and_expire(tmp_path: Path) -> None:
    secret, store = tmp_path / "signing-secret.json", tmp_path / "store.json"

    first = rotate(secret, store, T0, "--max-token-lifetime", str(HOUR))
    assert first.returncode == 0, first.stderr
    out = printed(first)
    assert out["previous kid"] == "none (first key created)" and out["deleted kids"] == "none"
    kid1 = out["new kid"]
    assert out["kids in store"] == kid1
    assert parse_secret_value(secret.read_text()).current.kid == kid1
    assert not (tmp_path / "signing-secret.json.pending.json").exists()

    url1 = sign(secret, T0 + 10)
    code, decision = check(store, url1, T0 + 20)
    assert (code, decision["decision"]) == (0, "allow")

    second = rotate(secret, store, T0 + 1800, "--max-token-lifetime", str(HOUR))
    assert second.returncode == 0, second.stderr
    out = printed(second)
    kid2 = out["new kid"]
    assert kid2 != kid1 and out["previous kid"] == kid1 and out["deleted kids"] == "none"
    assert sorted(out["kids in store"].split(", ")) == sorted([kid1, kid2])
    assert check(store, url1, T0 + 1900)[0] == 0, "the token signed before the rotation still plays"
    url2 = sign(secret, T0 + 5000)
    assert check(store, url2, T0 + 5010)[0] == 0

    third = rotate(secret, store, T0 + 1800 + HOUR + 300, "--max-token-lifetime", str(HOUR))
    assert third.returncode == 0, third.stderr
    out = printed(third)
    assert out["deleted kids"] == kid1
    code, decision = check(store, url1, T0 + 1800 + HOUR + 300)
    assert (code, decision["reason"]) == (1, "unknown-kid")
    assert check(store, url2, T0 + 1800 + HOUR + 300)[0] == 0, "kid2's tokens live on"


def test_an_empty_secret_file_is_bootstrapped_and_the_default_lifetime_is_the_longest(tmp_path: Path) -> None:
    secret, store = tmp_path / "s.json", tmp_path / "store.json"
    secret.write_text("\n")
    assert rotate(secret, store, T0).returncode == 0
    kid1 = parse_secret_value(secret.read_text()).current.kid
    for day in (1, 2, 3):  # default --max-token-lifetime is 7 days: nothing is deleted within a week
        assert rotate(secret, store, T0 + day * 86400).returncode == 0
    kids = {k.removeprefix("k:") for k in LocalEdgeStore(store).items("k:")}
    assert kid1 in kids and len(kids) == 4


def test_an_interrupted_rotation_is_resumed(tmp_path: Path) -> None:
    secret, store = tmp_path / "s.json", tmp_path / "store.json"
    assert rotate(secret, store, T0).returncode == 0
    local, edge_store = LocalSecretFile(secret), LocalEdgeStore(store)
    rotation = KeyRotation(local, edge_store, RotationPolicy(max_token_lifetime=HOUR))
    rotation.create_secret("interrupted-token", T0 + 100)
    rotation.set_secret("interrupted-token", T0 + 100)  # ... and then the process died
    pending_kid = parse_secret_value(local.pending_value("interrupted-token")).current.kid
    result = rotate(secret, store, T0 + 110, "--max-token-lifetime", str(HOUR))
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stderr and printed(result)["new kid"] == pending_kid
    assert not local.pending_path.exists()


def test_an_interrupted_rotation_found_too_late_is_abandoned_and_redone(tmp_path: Path) -> None:
    secret, store = tmp_path / "s.json", tmp_path / "store.json"
    assert rotate(secret, store, T0).returncode == 0
    local, edge_store = LocalSecretFile(secret), LocalEdgeStore(store)
    rotation = KeyRotation(local, edge_store, RotationPolicy(max_token_lifetime=HOUR))
    rotation.create_secret("interrupted-token", T0 + 100)
    rotation.set_secret("interrupted-token", T0 + 100)
    stale_kid = parse_secret_value(local.pending_value("interrupted-token")).current.kid
    result = rotate(secret, store, T0 + 86400, "--max-token-lifetime", str(HOUR))
    assert result.returncode == 0, result.stderr
    assert "abandoned" in result.stderr
    new_kid = printed(result)["new kid"]
    kids = {k.removeprefix("k:") for k in edge_store.items("k:")}
    assert new_kid != stale_kid and stale_kid not in kids and new_kid in kids


@pytest.mark.parametrize(
    "setup, args, message",
    [
        (lambda d: (d / "s.json").write_text("not a secret"), (), "not a signing secret"),
        (lambda d: (d / "s.json").write_text('{"kid": "a", "key": "c2hvcnQ"}'), (), "not a signing secret"),
        (lambda d: (d / "store.json").write_text("{oops"), (), "not a valid KeyValueStore file"),
        (lambda d: None, ("--margin", "10"), "must cover"),
        (lambda d: None, ("--max-token-lifetime", "0"), "at least 1"),
        (lambda d: None, ("--now", "-5"), "epoch seconds"),
    ],
)
def test_bad_input_exits_2_and_changes_nothing(tmp_path: Path, setup, args, message) -> None:  # type: ignore[no-untyped-def]
    setup(tmp_path)
    secret, store = tmp_path / "s.json", tmp_path / "store.json"
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    result = run("rotation", "rotate", "--secret-file", str(secret), "--store", str(store), *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if not p.name.endswith(".lock")} == before


def test_store_must_be_a_local_json_file(tmp_path: Path) -> None:
    for store in ("arn:aws:cloudfront::123456789012:key-value-store/abc", str(tmp_path / "store.txt"),
                  str(tmp_path / "missing-dir" / "store.json")):
        result = run("rotation", "rotate", "--secret-file", str(tmp_path / "s.json"), "--store", store)
        assert result.returncode == 2 and result.stderr.startswith("error: "), (store, result.stderr)
    assert not (tmp_path / "s.json").exists()


# -- the local twin of the secret (what the CLI rotates) ------------------------------------------------------------


def test_local_secret_file_versions_like_secrets_manager(tmp_path: Path) -> None:
    from rotation.secrets import AWSCURRENT, AWSPENDING, SecretError

    local = LocalSecretFile(tmp_path / "s.json")
    assert local.current_value() is None and local.describe().versions == {}
    local.put_pending("t1", '{"v": 1}')
    local.put_pending("t1", '{"v": 1}')  # idempotent
    with pytest.raises(SecretError, match="unfinished rotation"):
        local.put_pending("t2", '{"v": 2}')
    with pytest.raises(SecretError, match="different value"):
        local.put_pending("t1", '{"v": 3}')
    assert local.pending_value("t1") == '{"v": 1}' and local.pending_value("t2") is None
    assert local.describe().stages("t1") == (AWSPENDING,)
    assert local.promote("t1") is True
    assert local.current_value().strip() == '{"v": 1}' and not local.pending_path.exists()
    assert (local.path.stat().st_mode & 0o777) == 0o600
    state = local.describe()
    assert state.current_version is not None and state.current_version != "t1"
    with pytest.raises(SecretError, match="no pending version"):
        local.promote("t1")
    # A run that promoted and died before removing the sidecar: the token reads as AWSCURRENT, and the CLI cleans up.
    local.pending_path.write_text(json.dumps({"token": "t3", "value": local.current_value()}))
    assert local.describe().stages("t3") == (AWSCURRENT, AWSPENDING)
    local.pending_path.write_text("garbage")
    with pytest.raises(SecretError, match="remove it by hand"):
        local.pending_value("t3")


def test_a_sidecar_left_after_promotion_is_cleaned_up(tmp_path: Path) -> None:
    secret, store = tmp_path / "s.json", tmp_path / "store.json"
    assert rotate(secret, store, T0).returncode == 0
    local = LocalSecretFile(secret)
    kid1 = parse_secret_value(secret.read_text()).current.kid
    local.pending_path.write_text(json.dumps({"token": "done", "value": local.current_value()}))
    result = rotate(secret, store, T0 + 60)
    assert result.returncode == 0, result.stderr
    assert printed(result)["previous kid"] == kid1 and printed(result)["new kid"] != kid1
    assert not local.pending_path.exists()
