"""Asset path rules: the token segment, traversal checks and prefix scope (docs/edge-token.md)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from core.session_ids import SESSION_ID

JWT_SHAPE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\Z")
MAX_TOKEN_SEGMENT = 4096
#: Non-canonical percent-escapes (docs/edge-token.md, Path rules): a malformed or lowercase escape, an escaped
#: unreserved character, ``/``, ``\``, ``;`` or NUL, a double escape, an overlong or impossible UTF-8 byte. The same
#: pattern as ENC in edge/viewer_request.js; the shared vectors hold both to it.
_FORBIDDEN_ENCODED = re.compile(
    r"%(?![0-9A-F]{2})|%(2[DEF]|3[0-9B]|4[1-9A-F]|5[0-9ACF]|6[1-9A-F]|7[0-9AE]|00|25[0-9A-Fa-f]{2}|C[01]|F[5-9A-F]"
    r"|E0%[89]|F0%8)"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")


@dataclass(frozen=True)
class TokenizedPath:
    session_id: str
    jwt: str
    asset_path: str


class PathShapeError(ValueError):
    """The URI has no token segment (`missing`) or a malformed one."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def split_token(uri: str) -> TokenizedPath:
    """Split `/<sid>.<jwt>/<asset path>`; raises PathShapeError with reason missing-token or malformed-token."""
    if not uri.startswith("/"):
        raise PathShapeError("missing-token")
    slash = uri.find("/", 1)
    segment = uri[1:] if slash < 0 else uri[1:slash]
    asset_path = "/" if slash < 0 else uri[slash:]
    dot = segment.find(".")
    if dot < 0:
        raise PathShapeError("missing-token")
    session_id, jwt = segment[:dot], segment[dot + 1 :]
    if len(segment) > MAX_TOKEN_SEGMENT or not SESSION_ID.match(session_id) or not JWT_SHAPE.match(jwt):
        raise PathShapeError("malformed-token")
    return TokenizedPath(session_id=session_id, jwt=jwt, asset_path=asset_path)


def is_safe_path(path: str) -> bool:
    """False for paths that could escape a prefix or have another spelling: `//`, backslashes, control chars,
    non-canonical percent-escapes, dot segments."""
    if not path.startswith("/") or "//" in path or _CONTROL.search(path) or _FORBIDDEN_ENCODED.search(path):
        return False
    return all(segment not in (".", "..") for segment in path.split("/"))


def prefix_matches(prefix: str, path: str) -> bool:
    """`/live/ch1` matches `/live/ch1` and `/live/ch1/x` but not `/live/ch10/x`."""
    if path == prefix:
        return True
    return path.startswith(prefix) and (prefix.endswith("/") or path[len(prefix)] == "/")


def any_prefix_matches(prefixes: Iterable[str], path: str) -> bool:
    return any(prefix_matches(prefix, path) for prefix in prefixes)


def tokenized_path(session_id: str, jwt: str, asset_path: str) -> str:
    if not asset_path.startswith("/"):
        asset_path = "/" + asset_path
    return f"/{session_id}.{jwt}{asset_path}"
