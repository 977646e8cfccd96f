"""The real CloudFront Function, run under node through the same runner `python -m edge check` uses,
gives the expected decision for every shared vector, in at most 2 KeyValueStore reads."""

import pytest

from tests.helpers import load_vectors, vector_viewer

VECTORS = load_vectors()


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"])
def test_edge_function_matches_vector(edge_runner, vector) -> None:
    viewer = vector_viewer(vector)
    answer = edge_runner.request({
        "uri": vector["uri"], "viewer_ip": viewer.ip or "", "headers": dict(viewer.headers),
        "now": vector.get("now", VECTORS["now"]), "store": VECTORS["store"],
    })
    got = {k: answer[k] for k in ("decision", "status", "reason", "uri")}
    assert got == vector["expect"]
    assert answer["kvs_reads"] <= 3  # the key, whether the session has a revocation entry, the entry
