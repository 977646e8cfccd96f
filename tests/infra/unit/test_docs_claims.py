"""What the README and docs/ say of the repository, checked against the repository: counts, sizes, the folders and
commands they name, and nothing outside it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = {path.name: path.read_text(encoding="utf-8") for path in (ROOT / "docs").glob("*.md")}
VECTORS = json.loads((ROOT / "tests" / "vectors" / "edge_vectors.json").read_text(encoding="utf-8"))["vectors"]


def number(text: str) -> int:
    return int(text.replace(" ", "").replace("\u202f", "").replace(",", ""))


def test_the_vector_counts_are_the_files() -> None:
    (total,) = re.findall(r"(\d[\d ]*) vectors in both verifiers", README)
    assert number(total) == len(VECTORS)
    (spelling,) = re.findall(r"(\d+) shared vectors hold both verifiers to it", README)
    assert number(spelling) == sum(1 for v in VECTORS if v["name"].startswith("spelling-"))


def test_the_function_size_is_the_files() -> None:
    (size,) = re.findall(r"function source size \| ([\d ]+) B of the 10 240 B limit", README)
    assert number(size) == len((ROOT / "edge" / "viewer_request.js").read_bytes())


TRACKED = {Path(line).name for line in subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True,
                                                         text=True, check=True).stdout.splitlines()}


@pytest.mark.parametrize("name", ["README.md", *sorted(DOCS)])
def test_the_docs_name_nothing_outside_the_repository(name: str) -> None:
    """No path that climbs out of the checkout, no document the repository does not hold, no issue tracker: a
    user of the repository has none of them."""
    text = README if name == "README.md" else DOCS[name]
    assert not re.search(r"\.\./", text), f"{name} points above the repository"
    documents = set(re.findall(r"[\w.-]+\.md\b", text))
    assert documents <= TRACKED, f"{name} names documents the repository does not hold: {documents - TRACKED}"
    assert not re.search(r"the issue's|issue #", text), f"{name} refers to an issue"


def test_every_repository_path_the_readme_names_exists() -> None:
    named = set(re.findall(r"`((?:bench|detection|docs|edge|revocation|rotation|core|tools|tests|statemachine)/"
                           r"[\w./-]+?\.(?:py|mjs|js|json|md|sql))`", README))
    assert len(named) > 20
    missing = sorted(path for path in named if not (ROOT / path).exists())
    assert missing == []


def code_blocks(text: str, language: str = "") -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", text, re.M | re.S)


def test_the_backend_assertion_example_of_docs_entitlement_is_one_the_issuer_accepts() -> None:
    """docs/entitlement.md's Python, run as written with a backend key: what it signs, the issuer verifies."""
    import time

    from edge.entitlement import verify_assertion
    from edge.keys import generate_key

    (example,) = code_blocks(DOCS["entitlement.md"], "python")
    key = generate_key("backend-2026")
    scope: dict[str, object] = {"key_bytes": key.secret}
    exec(compile(example, "docs/entitlement.md", "exec"), scope)  # noqa: S102 - the doc's own example
    entitlement = verify_assertion(str(scope["assertion"]), key, int(time.time()))
    assert (entitlement.account, entitlement.device, entitlement.paths, entitlement.bindings) == (
        "account-42", "tv-livingroom", ("/live/ch1",), ("ip-prefix",))


def test_the_attach_example_of_docs_deploy_takes_only_flags_attach_has() -> None:
    (example,) = code_blocks(DOCS["deploy.md"])
    assert example.startswith("python -m tools.attach ")
    done = subprocess.run([sys.executable, "-m", "tools.attach", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert set(re.findall(r"--[a-z][a-z-]*", example)) <= set(re.findall(r"--[a-z][a-z-]*", done.stdout))
