"""The shared vectors: the committed file is what the generator writes, and the Python verifier gives the
expected decision for every vector (tests/js/vectors.test.mjs and the node test hold the function to the same)."""

import pytest

from edge.verify import verify_request
from tests.helpers import VECTORS_FILE, load_vectors, store_reader, vector_viewer
from tests.vectors.generate import render

VECTORS = load_vectors()


def test_committed_vectors_are_current() -> None:
    assert VECTORS_FILE.read_text(encoding="utf-8") == render(), "run `make vectors` and commit the result"


def test_vectors_cover_the_issue_list() -> None:
    names = {v["name"] for v in VECTORS["vectors"]}
    for required in ["valid", "expired", "not-yet-valid-nbf", "wrong-key", "unknown-kid", "tampered-header",
                     "tampered-payload", "tampered-signature", "alg-none", "alg-hs512", "alg-rs256",
                     "sid-prefix-swapped", "scope-out", "traversal-dotdot", "bind-ipv6-compressed",
                     "bind-ipv6-expanded", "bind-ipv4-mapped-dotted", "revoked", "revoked-but-expired"]:
        assert required in names
    reasons = {v["expect"]["reason"] for v in VECTORS["vectors"]}
    assert reasons >= {"ok", "missing-token", "malformed-token", "bad-alg", "unknown-kid", "bad-signature",
                       "bad-claims", "not-yet-valid", "expired", "sid-mismatch", "bad-path", "out-of-scope",
                       "binding", "revoked"}


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"])
def test_python_verifier_matches_vector(vector) -> None:
    decision = verify_request(vector["uri"], vector_viewer(vector), store_reader(VECTORS["store"]),
                              vector.get("now", VECTORS["now"]))
    assert decision.to_dict() == vector["expect"]


class _FaultyRevocations:
    """A store whose revocation entries cannot be read (the key still can)."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def get(self, key: str) -> str | None:
        if key.startswith("r:"):
            raise ConnectionError("KeyValueStore unavailable")
        return self.inner.get(key)


def test_a_fault_reading_the_revocation_follows_the_stacks_policy_like_the_edge() -> None:
    valid = next(v for v in VECTORS["vectors"] if v["name"] == "valid")
    store = _FaultyRevocations(store_reader(VECTORS["store"]))
    args = (valid["uri"], vector_viewer(valid), store, valid.get("now", VECTORS["now"]))
    assert verify_request(*args).allowed  # RevocationReadFault=allow, the default
    denied = verify_request(*args, on_fault="deny")
    assert (denied.status, denied.reason) == (403, "revocation-unavailable")
