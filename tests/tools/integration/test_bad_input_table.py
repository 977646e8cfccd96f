"""Every command line entry point against bad input, as a new user types it: exit 2, one clear message, no
traceback, and nothing written (every file and folder of the workspace as it was)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from revocation.ledger.sqlite import SqliteLedger
from tests.helpers import ROOT
from tools.generate import generate_corpus

pytestmark = pytest.mark.e2e

SESSION = "sess_bad_input_0001"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A corpus, a file, a folder of someone else's, a corpus in two formats, a ledger and a signing key."""
    root = tmp_path_factory.mktemp("bad-input")
    generate_corpus(root / "corpus", sessions=20, minutes=1, seed=3)
    (root / "afile.txt").write_text("not a folder\n")
    (root / "theirs").mkdir()
    (root / "theirs" / "notes.txt").write_text("someone else's\n")
    mixed = root / "mixed"
    mixed.mkdir()
    (mixed / "a.tsv").write_bytes((next((root / "corpus").rglob("*.gz"))).read_bytes())
    (mixed / "b.parquet").write_bytes(b"PAR1" + b"\0" * 16 + b"PAR1")
    (mixed / "fields.txt").write_text((root / "corpus" / "fields.txt").read_text())
    (root / "broken.json").write_text('{"sessions": ["not a verdict"]}')
    SqliteLedger(root / "ledger.sqlite").close()
    done = subprocess.run([sys.executable, "-m", "rotation", "rotate", "--secret-file", str(root / "secret.json"),
                           "--store", str(root / "store.json")], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return root


def snapshot(root: Path) -> dict[str, str | None]:
    """Every file's content (by hash) and every folder: what "nothing written" compares."""
    return {str(p.relative_to(root)): (None if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*"))}


CASES = [
    # detection
    (["detection", "detect", "--logs", "nothing-here", "--out", "v.json"], "not found"),
    (["detection", "detect", "--logs", "corpus", "--out", "theirs"], "is a folder"),
    (["detection", "detect", "--logs", "corpus", "--out", "afile.txt/v.json"], "is a file, not a folder"),
    (["detection", "detect", "--logs", "corpus", "--window", "0"], "window"),
    (["detection", "detect", "--logs", "corpus", "--now", "yesterday"], "epoch seconds"),
    (["detection", "detect", "--logs", "mixed", "--out", "v.json"], "both Parquet"),
    (["detection", "detect", "--logs", "nothing-here", "--out", "new-folder/v.json"], "not found"),
    (["detection", "detect", "--logs", "corpus", "--config", "no-config.json"], "detection config"),
    (["detection", "generate", "--out", "afile.txt", "--sessions", "5", "--minutes", "1", "--seed", "1"],
     "is a file, not a folder"),
    (["detection", "generate", "--out", "theirs", "--sessions", "5", "--minutes", "1", "--seed", "1"],
     "not made by python -m detection generate"),
    (["detection", "generate", "--out", "new", "--sessions", "0", "--minutes", "1", "--seed", "1"], "--sessions"),
    (["detection", "convert", "--logs", "corpus", "--out", "corpus"], "overlaps the input"),
    (["detection", "convert", "--logs", "corpus", "--out", "corpus/parquet"], "overlaps the input"),
    (["detection", "convert", "--logs", "corpus", "--out", "afile.txt"], "is a file, not a folder"),
    (["detection", "convert", "--logs", "nothing-here", "--out", "new"], "not found"),
    (["detection", "replay", "--logs", "corpus", "--out", "theirs"], "is a folder"),
    (["detection", "replay", "--logs", "corpus", "--batch-seconds", "0", "--out", "r.json"], "batching window"),
    (["detection", "evaluate", "--corpus", "theirs"], "no labels.csv"),
    (["detection", "report", "--verdicts", "afile.txt", "--out", "r.html"], "is not JSON"),
    (["detection", "report", "--verdicts", "missing.json", "--out", "r.html"], "cannot read the verdicts"),
    (["detection", "report", "--verdicts", "afile.txt", "--out", "theirs"], "is a folder"),
    (["detection", "report", "--verdicts", "broken.json", "--out", "r.html"], "session 0 is not a verdict"),
    (["detection", "demo", "--out", "theirs"], "not made by python -m detection demo"),
    (["detection", "demo", "--out", "afile.txt"], "is a file, not a folder"),
    (["detection", "demo", "--out", "corpus"], "not made by python -m detection demo"),
    (["detection", "demo", "--out", "new", "--sessions", "0"], "--sessions"),
    (["detection", "networks", "show", "--lookup", "not-a-network"], "--lookup takes an ASN"),
    (["detection", "revocations", "--ledger", "missing.sqlite"], "no ledger at"),
    (["detection", "run", "--logs", "corpus", "--ledger", "missing.sqlite", "--store", "store.json"], "no ledger at"),
    (["detection", "run", "--logs", "corpus", "--ledger", "ledger.sqlite", "--store", "store.json", "--out", "theirs"],
     "is a folder"),
    (["detection", "revoke", SESSION, "--reason", "manual", "--ledger", "ledger.sqlite", "--store", "missing.json"],
     "no edge store at"),
    (["detection", "revoke", "short", "--reason", "manual", "--ledger", "ledger.sqlite", "--store", "store.json"],
     "not a valid session id"),
    (["detection", "unrevoke", SESSION, "--ledger", "ledger.sqlite", "--store", "store.json", "--by", "ops"],
     "not revoked"),
    # edge
    (["edge", "sign", "--key-file", "missing.json", "/live/a.m3u8"], "cannot read key file"),
    (["edge", "sign", "--key-file", "secret.json", "--bind-country", "Germany", "/a"], "ISO 3166-1 alpha-2"),
    (["edge", "sign", "--key-file", "secret.json", "--ttl", "0", "/a"], "ttl"),
    (["edge", "check", "--store", "missing.json", "/x"], "does not exist"),
    (["edge", "check", "--store", "store.json", "--viewer-ip", "999.1.1.1", "/x"], "not an IP address"),
    (["edge", "serve", "--origin", "corpus", "--store", "store.json", "--port", "99999"], "not a port"),
    (["edge", "serve", "--origin", "afile.txt", "--store", "store.json"], "not a directory"),
    # rotation and attaching
    (["rotation", "rotate", "--secret-file", "afile.txt", "--store", "store.json"], "afile.txt"),
    (["tools.attach", "--undo", "missing-backup.json"], "cannot read backup"),
]


@pytest.mark.parametrize(("argv", "message"), CASES, ids=[" ".join(a[:3]) + f" {i}" for i, (a, _) in enumerate(CASES)])
def test_bad_input_exits_2_with_one_clear_message_and_writes_nothing(workspace: Path, argv: list[str],
                                                                     message: str) -> None:
    before = snapshot(workspace)
    done = subprocess.run([sys.executable, "-m", *argv], cwd=workspace, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(workspace), "PYTHONPATH": str(ROOT),
                               "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"})
    assert done.returncode == 2, (done.returncode, done.stdout[-500:], done.stderr[-1500:])
    assert "Traceback" not in done.stderr, done.stderr
    assert message in done.stderr, done.stderr
    assert done.stderr.count("error:") == 1, done.stderr  # one message (argparse adds its usage lines above it)
    assert snapshot(workspace) == before, "bad input must write nothing"
