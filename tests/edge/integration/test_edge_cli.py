"""`python -m edge sign | check | demo` end to end: real processes, the real function under node."""

import json

import pytest

from edge.keys import generate_key
from edge.store import LocalEdgeStore
from tests.edge.helpers import run_edge

pytestmark = pytest.mark.e2e
NOW = "1767225600"


@pytest.fixture()
def published(tmp_path):
    key = generate_key("cli1")
    secret = tmp_path / "secret.json"
    secret.write_text(key.to_secret_json())
    raw = tmp_path / "raw.key"
    raw.write_text(key.encoded)
    store_path = tmp_path / "store.json"
    LocalEdgeStore(store_path).put(key.store_key, key.encoded)
    return secret, raw, store_path


def sign(secret, *extra: str) -> str:
    result = run_edge("sign", "--key-file", str(secret), "--now", NOW, *extra)
    assert result.returncode == 0, result.stderr
    assert "nothing is recorded in a ledger" in result.stderr  # local signing says what it does not do
    return result.stdout.strip().splitlines()[-1]


def check(store_path, url: str, *extra: str):
    result = run_edge("check", "--store", str(store_path), "--now", NOW, *extra, url)
    return result.returncode, (json.loads(result.stdout) if result.stdout.strip() else None), result.stderr


def test_sign_then_check_allow_and_deny(published) -> None:
    secret, raw, store_path = published
    url = sign(secret, "--session", "clisession0000001", "--path-prefix", "/live/ch1", "--bind-ip",
               "2001:db8:1::/48", "https://cdn.example.com/live/ch1/master.m3u8")
    assert url.startswith("https://cdn.example.com/clisession0000001.")
    code, decision, _ = check(store_path, url, "--viewer-ip", "2001:0db8:0001:0000:0000:0000:0000:0042")
    assert (code, decision) == (0, {"decision": "allow", "status": 200, "reason": "ok", "uri": "/live/ch1/master.m3u8"})
    code, decision, _ = check(store_path, url, "--viewer-ip", "2001:db8:2::42")
    assert code == 1 and decision["status"] == 403 and decision["reason"] == "binding"
    LocalEdgeStore(store_path).put("r:clisession0000001", "1767229200|manual")
    code, decision, _ = check(store_path, url, "--viewer-ip", "2001:db8:1::42")
    assert code == 1 and decision["reason"] == "revoked"


def test_raw_key_with_kid_and_header_binding(published) -> None:
    secret, raw, store_path = published
    url = sign(raw, "--kid", "cli1", "--bind-header", "X-Device:tv-1", "--bind-ua", "Player/2", "/vod/a.m3u8")
    code, decision, _ = check(store_path, url, "--header", "x-device:tv-1", "--header", "User-Agent:Player/2")
    assert code == 0 and decision["uri"] == "/vod/a.m3u8"
    code, decision, _ = check(store_path, url, "--header", "x-device:tv-1")
    assert code == 1 and decision["reason"] == "binding"


@pytest.mark.parametrize(
    "args,message",
    [
        (["sign", "--key-file", "RAW", "/a"], "--kid"),
        (["sign", "--key-file", "SECRET", "--session", "bad", "/a"], "session id"),
        (["sign", "--key-file", "SECRET", "--bind-ip", "300.1.1.1", "/a"], "--bind-ip"),
        (["sign", "--key-file", "SECRET", "--ttl", "0", "/a"], "ttl"),
        (["sign", "--key-file", "MISSING", "/a"], "cannot read"),
        (["check", "--store", "MISSING", "/x"], "does not exist"),
        (["check", "--store", "STORE", "--header", "nocolon", "/x"], "NAME:VALUE"),
        (["check", "--store", "CORRUPT", "/x"], ""),
        (["check", "--store", "STORE", "relative/path"], "absolute URL"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(published, tmp_path, args, message) -> None:
    secret, raw, store_path = published
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text("{not json")
    mapping = {"RAW": str(raw), "SECRET": str(secret), "MISSING": str(tmp_path / "nope"), "STORE": str(store_path),
               "CORRUPT": str(corrupt)}
    result = run_edge(*[mapping.get(a, a) for a in args])
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert corrupt.read_text() == "{not json"  # bad input loses nothing


def test_demo_runs(tmp_path) -> None:
    result = run_edge("demo", "--workdir", str(tmp_path / "demo"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "demo passed" in result.stdout
    assert result.stdout.count("403 revoked") == 2


@pytest.mark.parametrize(("args", "message"), [
    (["sign", "--key-file", "SECRET", "--bind-country", "Germany", "/a"], "not an ISO 3166-1 alpha-2 code"),
    (["sign", "--key-file", "SECRET", "--bind-region", "Berlin", "/a"], "not a region code"),
    (["check", "--store", "STORE", "--viewer-ip", "999.1.1.1", "/x"], "'999.1.1.1' is not an IP address"),
    (["serve", "--origin", "ORIGIN", "--store", "STORE", "--port", "99999"], "not a port"),
    (["serve", "--origin", "ORIGIN", "--store", "STORE", "--port", "-1"], "not a port"),
    (["serve", "--origin", "ORIGIN", "--store", "STORE", "--viewer-ip", "localhost"], "not an IP address"),
])
def test_values_no_viewer_or_socket_could_take_are_bad_input(published, tmp_path, args, message) -> None:
    secret, _, store_path = published
    mapping = {"SECRET": str(secret), "STORE": str(store_path), "ORIGIN": str(tmp_path)}
    result = run_edge(*[mapping.get(a, a) for a in args])
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_sign_warns_when_the_url_lies_outside_its_own_prefixes(published) -> None:
    secret, _, _ = published
    result = run_edge("sign", "--key-file", str(secret), "--path-prefix", "/live/ch2", "/live/ch1/a.m3u8")
    assert result.returncode == 0 and "lies outside every --path-prefix" in result.stderr


def test_serve_plays_a_url_bound_to_another_address_and_survives_a_broken_store(published, tmp_path) -> None:
    import socket
    import urllib.error
    import urllib.request

    from tests.edge.helpers import EdgeServer

    secret, _, store_path = published
    (tmp_path / "live").mkdir()
    (tmp_path / "live" / "a.m3u8").write_text("#EXTM3U\n")
    signed = run_edge("sign", "--key-file", str(secret), "--bind-ip", "203.0.113.0/24", "/live/a.m3u8")  # now
    url = signed.stdout.strip().splitlines()[-1]
    with socket.socket() as taken:  # a port in use: one clear line, exit 2
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = run_edge("serve", "--origin", str(tmp_path), "--store", str(store_path), "--port",
                        str(taken.getsockname()[1]))
    assert busy.returncode == 2 and "cannot listen on" in busy.stderr and "Traceback" not in busy.stderr
    server = EdgeServer(tmp_path, store_path, "--viewer-ip", "203.0.113.7")
    try:
        with urllib.request.urlopen(f"{server.base}{url}", timeout=10) as played:
            assert played.status == 200
        store_path.write_text("{broken")  # the store goes bad while serve runs
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(f"{server.base}{url}", timeout=10)
        assert failed.value.code == 503 and b"edge-unavailable" in failed.value.read()
        log = "\n".join(server.drain())
        assert "/live/a.m3u8 -> /live/a.m3u8" in log and "503 edge-unavailable" in log and "Traceback" not in log
    finally:
        server.stop()
