"""The edge demo (`make demo` for now): issue a token, check requests through the real edge function,
revoke the session in the store, check again. Everything local: a key file, a JSON store, node."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit

from edge.binding import Viewer, ip_binding
from edge.keys import generate_key
from edge.node_runtime import EdgeFunctionRunner
from edge.store import LocalEdgeStore
from edge.tokens import TokenRequest, issue_token

ASSET_URL = "https://cdn.example.com/live/match-of-the-day/master.m3u8"
HOME_PREFIX = "203.0.113.0/24"
REVOCATION_MARGIN_SECONDS = 300


def run_demo(workdir: Path) -> int:
    workdir.mkdir(parents=True, exist_ok=True)
    key = generate_key()
    (workdir / "signing-secret.json").write_text(key.to_secret_json() + "\n", encoding="utf-8")
    store_path = workdir / "edge-store.json"
    store_path.unlink(missing_ok=True)
    store = LocalEdgeStore(store_path)
    store.put(key.store_key, key.encoded)

    now = int(time.time())
    descriptor, network = ip_binding(HOME_PREFIX)
    request = TokenRequest(ttl_seconds=3600, paths=["/live/match-of-the-day"], bindings=[descriptor],
                           viewer=Viewer(ip=network))
    issued = issue_token(request, key, now=now)
    url = issued.url_for(ASSET_URL)
    path = urlsplit(url).path
    segment = path.replace("master.m3u8", "1080p/segment_00042.ts")
    print(f"key {key.kid} published to {store_path}")
    print(f"session {issued.session_id}, bound to {HOME_PREFIX}, scoped to /live/match-of-the-day, 1 h")
    print(f"tokenized URL:\n  {url}\n")

    steps = [
        ("viewer at home plays the master playlist", path, "203.0.113.20"),
        ("same viewer fetches a segment (token inherited from the path)", segment, "203.0.113.20"),
        ("someone else replays the shared URL", path, "198.51.100.99"),
        ("the token on another channel", path.replace("match-of-the-day", "other-channel"), "203.0.113.20"),
    ]
    failures = 0
    with EdgeFunctionRunner() as runner:
        def check(label: str, uri: str, ip: str, expected: str) -> None:
            nonlocal failures
            decision = runner.decide(uri, Viewer(ip=ip), time.time(), store_path=store_path)
            verdict = f"{decision.status} {decision.reason}"
            ok = verdict.startswith(expected)
            failures += not ok
            print(f"  {'ok ' if ok else 'BAD'} {label:<64} -> {verdict}")

        print("before revocation:")
        for (label, uri, ip), expected in zip(steps, ["200", "200", "403 binding", "403 out-of-scope"]):
            check(label, uri, ip, expected)

        expiry = issued.expires_at + REVOCATION_MARGIN_SECONDS
        store.put(f"r:{issued.session_id}", f"{expiry}|manual")
        print(f"\nrevoked r:{issued.session_id} until {expiry} (token expiry + {REVOCATION_MARGIN_SECONDS} s)")
        print("after revocation:")
        check(steps[0][0], path, "203.0.113.20", "403 revoked")
        check(steps[1][0], segment, "203.0.113.20", "403 revoked")
    print("\ndemo " + ("passed" if failures == 0 else f"FAILED ({failures} unexpected decisions)"))
    return 0 if failures == 0 else 1
