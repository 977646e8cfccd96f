"""Run the real CloudFront Function (edge/viewer_request.js) under node, through edge/runtime/runner.mjs.

One long-lived node process answers one JSON line per request, so `check`, `serve`, the fuzz tests and the
demo all see exactly what CloudFront would do with the same source and store.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

from edge.binding import Viewer
from edge.verify import Decision

EDGE_DIR = Path(__file__).resolve().parent
RUNNER = EDGE_DIR / "runtime" / "runner.mjs"
FUNCTION_SOURCE = EDGE_DIR / "viewer_request.js"


class EdgeRuntimeError(RuntimeError):
    """node is missing, or the runner failed or answered something unreadable."""


def node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        raise EdgeRuntimeError("node is not installed: the edge function runs under node (v18 or newer)")
    return node


class EdgeFunctionRunner:
    """A node process running the edge function; thread-safe, one request at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process = subprocess.Popen(
            [node_binary(), str(RUNNER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            bufsize=1,
        )

    def request(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Send one raw runner request and return its raw answer."""
        with self._lock:
            stdin, stdout = self._process.stdin, self._process.stdout
            assert stdin is not None and stdout is not None
            try:
                stdin.write(json.dumps(payload) + "\n")
                stdin.flush()
                line = stdout.readline()
            except (BrokenPipeError, OSError) as exc:
                raise EdgeRuntimeError(f"edge runner died: {self._stderr()}") from exc
        if not line:
            raise EdgeRuntimeError(f"edge runner exited: {self._stderr()}")
        answer = json.loads(line)
        if "error" in answer:
            raise EdgeRuntimeError(f"edge runner rejected the request: {answer['error']}")
        return answer

    def decide(
        self,
        uri: str,
        viewer: Viewer,
        now: float,
        *,
        store_path: str | Path | None = None,
        store: dict[str, Any] | None = None,
        method: str = "GET",
        querystring: str = "",
    ) -> Decision:
        payload: dict[str, Any] = {
            "uri": uri,
            "viewer_ip": viewer.ip or "",
            "headers": dict(viewer.headers),
            "now": now,
            "method": method,
            "querystring": querystring,
        }
        if store_path is not None:
            payload["store_path"] = str(Path(store_path).resolve())
        else:
            payload["store"] = store if store is not None else {"data": []}
        answer = self.request(payload)
        return Decision(answer["decision"], int(answer["status"]), answer["reason"], answer["uri"])

    def _stderr(self) -> str:
        self._process.kill()
        _, err = self._process.communicate(timeout=5)
        return (err or "").strip()[-2000:] or "no output"

    def close(self) -> None:
        if self._process.poll() is None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
        for stream in (self._process.stdout, self._process.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> "EdgeFunctionRunner":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
