import json
from pathlib import Path
from typing import Any

import pytest

from edge.binding import Viewer
from edge.verify import MappingReader

VECTORS_FILE = Path(__file__).parent / "vectors" / "edge_vectors.json"


def load_vectors() -> dict[str, Any]:
    return json.loads(VECTORS_FILE.read_text(encoding="utf-8"))


def vector_viewer(vector: dict[str, Any]) -> Viewer:
    return Viewer.of(vector["viewer_ip"] or None, vector["headers"])


def store_reader(store_document: dict[str, Any]) -> MappingReader:
    return MappingReader({entry["key"]: entry["value"] for entry in store_document["data"]})


@pytest.fixture(scope="session")
def edge_runner():
    from edge.node_runtime import EdgeFunctionRunner

    with EdgeFunctionRunner() as runner:
        yield runner
