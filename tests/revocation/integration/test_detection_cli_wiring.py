"""`python -m detection revoke|revocations|unrevoke` reach the edge: the real function denies, then allows."""

import json
import subprocess
import sys
import time
from pathlib import Path

from edge.keys import generate_key
from edge.store import LocalEdgeStore
from edge.tokens import TokenRequest, issue_token
from tests.helpers import ROOT

SESSION = "wiredsession000001"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def check(store: Path, uri: str) -> dict:
    result = run("edge", "check", "--store", str(store), uri)
    return json.loads(result.stdout)


def test_manual_revocation_through_the_detection_cli(tmp_path: Path) -> None:
    key = generate_key()
    store, ledger = tmp_path / "store.json", tmp_path / "ledger.sqlite"
    LocalEdgeStore(store).put(key.store_key, key.encoded)
    uri = f"/{issue_token(TokenRequest(session_id=SESSION), key, int(time.time())).segment}/live/a.ts"
    assert check(store, uri)["decision"] == "allow"

    revoked = run("detection", "revoke", SESSION, "--reason", "manual", "--ttl", "600", "--ledger", str(ledger),
                  "--store", str(store), "--by", "ops", "--create")
    assert revoked.returncode == 0, revoked.stderr
    assert check(store, uri)["reason"] == "revoked"
    listing = run("detection", "revocations", "--ledger", str(ledger), "--json")
    assert listing.returncode == 0 and SESSION in listing.stdout

    lifted = run("detection", "unrevoke", SESSION, "--ledger", str(ledger), "--store", str(store), "--by", "ops")
    assert lifted.returncode == 0, lifted.stderr
    assert check(store, uri)["decision"] == "allow"

    bad = run("detection", "revoke", "short", "--reason", "manual", "--ledger", str(ledger), "--store", str(store))
    assert bad.returncode == 2 and bad.stderr.startswith("error: ")
