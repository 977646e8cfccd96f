"""`python -m edge serve`: a folder served over HTTP on 127.0.0.1 through the real edge function, so any
player (ffmpeg, a browser with hls.js) can be pointed at tokenized URLs and see what CloudFront would do.

Each request is decided by edge/viewer_request.js under node with the store file re-read, so a revocation
written to the store takes effect on the next request. One log line per request on stderr:
`<status> <reason> <uri> -> <forwarded path>`.
"""

from __future__ import annotations

import mimetypes
import sys
import time
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from edge.binding import Viewer
from edge.node_runtime import EdgeFunctionRunner, EdgeRuntimeError

MEDIA_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".mpd": "application/dash+xml",
    ".ts": "video/mp2t",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".aac": "audio/aac",
    ".vtt": "text/vtt",
}


def content_type(path: Path) -> str:
    return MEDIA_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def origin_file(origin: Path, forwarded_uri: str) -> Path | None:
    """The file under `origin` for a forwarded URI, or None (missing, or outside the origin)."""
    candidate = (origin / unquote(forwarded_uri).lstrip("/")).resolve()
    if candidate != origin and origin not in candidate.parents:
        return None
    return candidate if candidate.is_file() else None


class EdgeHandler(BaseHTTPRequestHandler):
    server_version = "edge-serve/1"

    def __init__(self, *args: object, runner: EdgeFunctionRunner, origin: Path, store: Path,
                 extra_headers: dict[str, str], viewer_ip: str | None = None, **kwargs: object) -> None:
        self.runner, self.origin, self.store, self.extra_headers = runner, origin, store, extra_headers
        self.viewer_ip = viewer_ip  # the address the function sees instead of the client's (a viewer elsewhere)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._handle(send_body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._handle(send_body=False)

    def _handle(self, send_body: bool) -> None:
        parts = urlsplit(self.path)
        headers: dict[str, list[str]] = {}
        for name, value in self.headers.items():  # a header sent twice stays twice, as CloudFront passes it
            headers.setdefault(name.lower(), []).append(value)
        headers.update({name.lower(): [value] for name, value in self.extra_headers.items()})
        viewer = Viewer.of(self.viewer_ip or self.client_address[0], headers)
        try:
            decision = self.runner.decide(
                parts.path, viewer, time.time(), store_path=self.store, method=self.command, querystring=parts.query
            )
        except EdgeRuntimeError as exc:  # e.g. the store became unreadable: say so, and keep serving
            print(f"503 edge-unavailable {parts.path}: {exc}", file=sys.stderr, flush=True)
            self._send(503, f"edge-unavailable: {exc}\n".encode(), "text/plain", "Service Unavailable", send_body)
            return
        log = f"{decision.status} {decision.reason} {parts.path} -> {decision.uri if decision.allowed else '-'}"
        print(log, file=sys.stderr, flush=True)
        if not decision.allowed:
            self._send(decision.status, f"{decision.reason}\n".encode(), "text/plain", decision.reason, send_body)
            return
        path = origin_file(self.origin, decision.uri)
        if path is None:
            self._send(404, b"not found\n", "text/plain", "Not Found", send_body)
            return
        self._send(200, path.read_bytes(), content_type(path), "OK", send_body)

    def _send(self, status: int, body: bytes, ctype: str, description: str, send_body: bool) -> None:
        self.send_response(status, description)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Access-Control-Allow-Origin", "*")
        if status != 200:
            self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # our own line per request is enough
        return


class PortError(OSError):
    """The port cannot be listened on (taken, or not allowed)."""


def make_server(origin: Path, store: Path, runner: EdgeFunctionRunner, port: int = 8080,
                extra_headers: dict[str, str] | None = None, viewer_ip: str | None = None) -> ThreadingHTTPServer:
    handler = partial(EdgeHandler, runner=runner, origin=origin.resolve(), store=store.resolve(),
                      extra_headers=extra_headers or {}, viewer_ip=viewer_ip)
    try:
        return ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as exc:
        raise PortError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}; choose another --port") from None


def serve(origin: Path, store: Path, port: int = 8080, extra_headers: dict[str, str] | None = None,
          viewer_ip: str | None = None) -> None:
    with EdgeFunctionRunner() as runner:
        server = make_server(origin, store, runner, port, extra_headers, viewer_ip)
        print(f"serving {origin} through the edge function on http://127.0.0.1:{server.server_port}/",
              file=sys.stderr, flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
