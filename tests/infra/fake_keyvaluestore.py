"""A CloudFront KeyValueStore data plane on loopback, for clients that really sign and send their requests.

moto has no ``cloudfront-keyvaluestore``, and botocore's Stubber answers before a request is signed, so neither can
show that a function signs with SigV4A (which botocore does only with awscrt). This server answers the operations the
edge store uses (DescribeKeyValueStore, GetKey, ListKeys, UpdateKeys) in the service's rest-json shapes, with ETags
and If-Match like the real one, and keeps the ``Authorization`` header of every request.

The service's endpoint rules put the account id in front of any endpoint's host (``https://<account>.<host>``), a
name no resolver here knows; so clients reach this server as their HTTP proxy (``HTTP_PROXY``), which gets the
absolute URL and needs no name resolution.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

PREFIX = "/key-value-stores/"


@dataclass
class FakeKeyValueStore:
    arn: str
    items: dict[str, str] = field(default_factory=dict)
    version: int = 1
    authorizations: list[str] = field(default_factory=list)
    region_sets: list[str] = field(default_factory=list)
    operations: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def etag(self) -> str:
        return f"KV{self.version:08d}"

    def _size(self) -> dict[str, int]:
        size = sum(len(k.encode()) + len(v.encode()) for k, v in self.items.items())
        return {"ItemCount": len(self.items), "TotalSizeInBytes": size}

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], Any]:
        """``(status, headers, JSON body)`` for one request."""
        if not path.startswith(PREFIX):
            return _error(400, "ValidationException", f"no such operation: {method} {path}")
        arn, _, rest = path[len(PREFIX):].partition("/keys")
        if unquote(arn) != self.arn:
            return _error(404, "ResourceNotFoundException", f"no key value store {unquote(arn)}")
        with self.lock:
            if method == "GET" and rest == "" and not path.endswith("/keys"):
                self.operations.append("DescribeKeyValueStore")
                return 200, {"ETag": self.etag}, {"KvsARN": self.arn, "Created": 1_767_225_600, "Status": "READY",
                                                   **self._size()}
            if method == "GET" and rest == "":
                self.operations.append("ListKeys")
                return 200, {}, {"Items": [{"Key": k, "Value": v} for k, v in sorted(self.items.items())]}
            if method == "GET" and rest.startswith("/"):
                self.operations.append("GetKey")
                key = unquote(rest[1:])
                if key not in self.items:
                    return _error(404, "ResourceNotFoundException", f"no key {key}")
                return 200, {}, {"Key": key, "Value": self.items[key], **self._size()}
            if method == "POST" and rest == "":
                self.operations.append("UpdateKeys")
                if headers.get("if-match") != self.etag:
                    return _error(409, "ConflictException", "the ETag does not match")
                request = json.loads(body or b"{}")
                for put in request.get("Puts", []):
                    self.items[put["Key"]] = put["Value"]
                for delete in request.get("Deletes", []):
                    self.items.pop(delete["Key"], None)
                self.version += 1
                return 200, {"ETag": self.etag}, self._size()
        return _error(400, "ValidationException", f"no such operation: {method} {path}")


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, str], Any]:
    return status, {"x-amzn-ErrorType": code}, {"Message": message}


@contextmanager
def serve(store: FakeKeyValueStore) -> Iterator[str]:
    """Serve ``store`` on 127.0.0.1; yields the proxy URL to give clients as ``HTTP_PROXY``."""

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            body = self.rfile.read(int(headers.get("content-length", "0") or 0))
            with store.lock:
                store.authorizations.append(headers.get("authorization", ""))
                store.region_sets.append(headers.get("x-amz-region-set", ""))
            status, extra, payload = store.answer(self.command, urlsplit(self.path).path, headers, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            for name, value in {**extra, "Content-Type": "application/json", "Content-Length": str(len(data))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _handle

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
