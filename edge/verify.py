"""The Python verifier: the same rules as edge/viewer_request.js (docs/edge-token.md), used by the
key-rotation self-test, by the shared test vectors and by anyone who wants to check a URL in Python.

PyJWT does the parsing, the algorithm allow-list and the signature; the time checks are ours because the
verifier takes `now` as an input (so tests and replays are deterministic).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

import jwt

from core.b64 import b64url_decode
from edge.binding import Viewer, binding_matches, validate_descriptor
from edge.keys import KID_PATTERN, MIN_KEY_BYTES
from edge.paths import PathShapeError, any_prefix_matches, is_safe_path, split_token

SKEW_SECONDS = 30
#: Deepest JSON nesting a token part may have (brackets outside strings); the edge caps it the same way (DEPTH), so
#: neither verifier runs out of stack on a crafted token and both call it malformed.
MAX_JSON_DEPTH = 8
_EXPIRY = re.compile(r"^[0-9]+\Z")
_BRACKETS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')
_SIGNATURE = jwt.api_jws.PyJWS()


class KeyValueReader(Protocol):
    def get(self, key: str) -> str | None: ...


@dataclass(frozen=True)
class Decision:
    decision: Literal["allow", "deny"]
    status: int
    reason: str
    uri: str

    @property
    def allowed(self) -> bool:
        return self.decision == "allow"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Deny(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _unauthorized(reason: str) -> _Deny:
    return _Deny(401, reason)


def _forbidden(reason: str) -> _Deny:
    return _Deny(403, reason)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_prefix_list(value: Any, allow_empty: bool) -> bool:
    return (
        isinstance(value, list)
        and (allow_empty or len(value) > 0)
        and all(isinstance(p, str) and p.startswith("/") for p in value)
    )


def _check_claim_types(claims: dict[str, Any]) -> None:
    ok = (
        isinstance(claims.get("sid"), str)
        and _is_number(claims.get("exp"))
        and _is_number(claims.get("iat"))
        and ("nbf" not in claims or _is_number(claims["nbf"]))
        and ("paths" not in claims or _is_prefix_list(claims["paths"], allow_empty=False))
        and ("exc" not in claims or _is_prefix_list(claims["exc"], allow_empty=True))
    )
    if ok and "bnd" in claims:
        bnd = claims["bnd"]
        ok = isinstance(bnd, list) and len(bnd) > 0 and isinstance(claims.get("bh"), str)
        try:
            ok = ok and all(isinstance(d, str) and validate_descriptor(d) for d in bnd)
        except ValueError:
            ok = False
    if not ok:
        raise _unauthorized("bad-claims")


def _signing_key(store: KeyValueReader, kid: str) -> bytes:
    encoded = store.get(f"k:{kid}")
    try:
        key = b64url_decode(encoded) if encoded is not None else b""
    except ValueError:
        key = b""
    if len(key) < MIN_KEY_BYTES:
        raise _unauthorized("unknown-kid")
    return key


def too_deep(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether JSON ``text`` nests brackets deeper than ``limit`` (strings skipped), without parsing it."""
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for match in _BRACKETS.finditer(text):
        bracket = match.group()
        if bracket in "[{":
            depth += 1
            if depth > limit:
                return True
        elif bracket in "]}":
            depth -= 1
    return False


def _json_object(part: str) -> dict[str, Any] | None:
    """A JWT part as the edge reads it: canonical base64url, strict UTF-8 (no BOM), nested at most
    ``MAX_JSON_DEPTH`` deep, plain JSON (no NaN or Infinity), an object. None otherwise."""
    try:
        text = b64url_decode(part).decode("utf-8")
        if too_deep(text):
            return None
        value = json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _verified_claims(token: str, store: KeyValueReader) -> tuple[dict[str, Any], bytes]:
    header_part, payload_part, signature_part = token.split(".")
    try:
        for part in (payload_part, signature_part):
            b64url_decode(part)
    except ValueError:
        raise _unauthorized("malformed-token") from None
    header = _json_object(header_part)
    if header is None or "crit" in header or "b64" in header:  # no JWS extensions, like the edge
        raise _unauthorized("malformed-token")
    if header.get("alg") != "HS256":
        raise _unauthorized("bad-alg")
    kid = header.get("kid")
    if not isinstance(kid, str) or not KID_PATTERN.match(kid):
        raise _unauthorized("malformed-token")
    key = _signing_key(store, kid)
    if len(b64url_decode(signature_part)) != 32:
        raise _unauthorized("bad-signature")
    try:  # the signature only (JWS): the payload is parsed below, depth-capped, as at the edge
        _SIGNATURE.decode(token, key, algorithms=["HS256"])
    except jwt.InvalidSignatureError:
        raise _unauthorized("bad-signature") from None
    except jwt.InvalidTokenError:
        raise _unauthorized("malformed-token") from None
    claims = _json_object(payload_part)
    if claims is None:
        raise _unauthorized("malformed-token")
    return claims, key


def _check_times(claims: dict[str, Any], now: float) -> None:
    if claims["iat"] > now + SKEW_SECONDS or claims.get("nbf", float("-inf")) > now + SKEW_SECONDS:
        raise _unauthorized("not-yet-valid")
    if claims["exp"] <= now - SKEW_SECONDS:
        raise _unauthorized("expired")


def revocation_active(value: str | None, now: float) -> bool:
    """`<expiry>|<reason>` revokes while expiry > now; an unreadable expiry counts as revoked (fail closed)."""
    if value is None:
        return False
    expiry = value.split("|", 1)[0]
    return not _EXPIRY.match(expiry) or int(expiry) > now


def _check_request(uri: str, viewer: Viewer, store: KeyValueReader, now: float, on_fault: str = "allow") -> str:
    try:
        parts = split_token(uri)
    except PathShapeError as exc:
        raise _unauthorized(exc.reason) from None
    claims, key = _verified_claims(parts.jwt, store)
    _check_claim_types(claims)
    _check_times(claims, now)
    if claims["sid"] != parts.session_id:
        raise _unauthorized("sid-mismatch")
    path = parts.asset_path
    if not is_safe_path(path):
        raise _forbidden("bad-path")
    if "paths" in claims and not any_prefix_matches(claims["paths"], path):
        raise _forbidden("out-of-scope")
    exempt = any_prefix_matches(claims.get("exc", []), path)
    if "bnd" in claims and not exempt and not binding_matches(key, claims["bnd"], claims["bh"], viewer):
        raise _forbidden("binding")
    try:
        revocation = store.get(f"r:{parts.session_id}")
    except Exception:  # noqa: BLE001 - a store fault: the stack's RevocationReadFault decides, as at the edge
        if on_fault != "allow":
            raise _forbidden("revocation-unavailable") from None
        revocation = None
    if revocation_active(revocation, now):
        raise _forbidden("revoked")
    return path


def verify_request(
    uri: str, viewer: Viewer, store: KeyValueReader, now: float, *, on_fault: str = "allow"
) -> Decision:
    """Decide one viewer request exactly as the edge function would; ``on_fault`` is the function's
    RevocationReadFault ("allow" or "deny") for a store that faults reading the session's revocation."""
    try:
        forwarded = _check_request(uri, viewer, store, now, on_fault)
    except _Deny as deny:
        return Decision("deny", deny.status, deny.reason, uri)
    except Exception:  # noqa: BLE001 - like the edge: an unexpected error is a deny, never a pass
        return Decision("deny", 401, "error", uri)
    return Decision("allow", 200, "ok", forwarded)


class MappingReader:
    """A KeyValueReader over a plain dict (tests, vectors)."""

    def __init__(self, data: dict[str, str]) -> None:
        self._data = data

    def get(self, key: str) -> str | None:
        return self._data.get(key)
