"""Entitlement assertions: what the operator's backend vouches for before the issuer signs a playback token.

An assertion is a short-lived JWT (HS256) that the backend signs with the entitlement key (a Secrets Manager secret
or a local file in the signing key's shape, ``{"kid", "key"}``) and that the caller of ``POST /tokens`` sends in
the ``X-Entitlement`` header. Its claims:

* ``aud``: ``media-shield-issuer``; ``iat`` and ``exp``, at most :data:`MAX_ASSERTION_SECONDS` apart;
* ``sub``: the account (1-128 of ``[A-Za-z0-9_.:@-]``); ``dev``: the device (optional, same characters);
* ``paths``: the path prefixes the account may watch (the token's scope must lie inside them);
* ``bnd``: the bindings the token must carry (``ip``, ``ip-prefix``, ``country``, ``region``, ``ua``,
  ``header:<name>``), optional;
* ``ttl``: the longest token lifetime the backend allows, optional.

The issuer, not the caller, then chooses the session id: :func:`derive_session_id` of account and device, so a
device of an account keeps one session across tokens (and a revocation of it holds against the next request), and
nobody can mint tokens under another viewer's session id. Domain code: no boto3, no HTTP.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

import jwt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.b64 import b64url_encode
from edge.keys import SigningKey
from edge.paths import prefix_matches

__all__ = [
    "ASSERTION_HEADER",
    "AUDIENCE",
    "MAX_ASSERTION_SECONDS",
    "Entitlement",
    "EntitlementError",
    "derive_session_id",
    "sign_assertion",
    "verify_assertion",
]

ASSERTION_HEADER = "x-entitlement"
AUDIENCE = "media-shield-issuer"
MAX_ASSERTION_SECONDS = 300
LEEWAY_SECONDS = 30
_NAME = r"^[A-Za-z0-9_.:@-]{1,128}$"


class EntitlementError(ValueError):
    """An assertion the issuer does not accept; ``reason`` says why (the response's error code)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Entitlement(BaseModel):
    """The claims of a verified assertion."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    account: Annotated[str, Field(alias="sub", pattern=_NAME)]
    device: Annotated[str | None, Field(alias="dev", pattern=_NAME)] = None
    paths: Annotated[tuple[str, ...], Field(min_length=1, max_length=32)]
    bindings: Annotated[tuple[str, ...], Field(alias="bnd", max_length=16)] = ()
    max_ttl_seconds: Annotated[int | None, Field(alias="ttl", ge=1)] = None
    expires_at: Annotated[int, Field(alias="exp")]

    def allows_prefix(self, prefix: str) -> bool:
        return any(prefix_matches(path, prefix) for path in self.paths)


def derive_session_id(account: str, device: str | None) -> str:
    """The session id of an account's device: 24 characters of base64url (a SHA-256 of both), the same every time."""
    digest = hashlib.sha256(f"media-shield session\n{account}\n{device or ''}".encode()).digest()
    return b64url_encode(digest)[:24]


def verify_assertion(text: str | None, key: SigningKey, now: int) -> Entitlement:
    """The entitlement of an assertion signed with ``key``; raises :class:`EntitlementError` otherwise."""
    if not text:
        raise EntitlementError("entitlement-missing", f"send the backend's entitlement assertion in {ASSERTION_HEADER}")
    try:
        header = jwt.get_unverified_header(text)
    except jwt.InvalidTokenError:
        raise EntitlementError("entitlement-invalid", "the entitlement assertion is not a JWT") from None
    if header.get("alg") != "HS256" or header.get("kid") != key.kid:
        raise EntitlementError("entitlement-invalid", f"the entitlement assertion must be HS256 with kid {key.kid!r}")
    try:  # the times are checked below against ``now`` (the library would read the clock itself)
        claims: dict[str, Any] = jwt.decode(
            text, key.secret, algorithms=["HS256"], audience=AUDIENCE,
            options={"require": ["exp", "iat", "sub", "aud"], "verify_exp": False, "verify_iat": False,
                     "verify_nbf": False},
        )
    except jwt.InvalidTokenError as exc:
        raise EntitlementError("entitlement-invalid", f"the entitlement assertion is not valid: {exc}") from None
    times = (claims.get("iat"), claims.get("exp"))
    if not all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in times):
        raise EntitlementError("entitlement-invalid", "the entitlement assertion's iat and exp must be numbers")
    if claims["exp"] <= now - LEEWAY_SECONDS:
        raise EntitlementError("entitlement-expired", "the entitlement assertion has expired")
    if claims["exp"] - claims["iat"] > MAX_ASSERTION_SECONDS:
        raise EntitlementError(
            "entitlement-invalid", f"an entitlement assertion may live at most {MAX_ASSERTION_SECONDS} s"
        )
    if claims["iat"] > now + LEEWAY_SECONDS:
        raise EntitlementError("entitlement-invalid", "the entitlement assertion is issued in the future")
    try:
        return Entitlement.model_validate(claims)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise EntitlementError("entitlement-invalid", f"the entitlement's claims are not valid: {problems}") from None


def sign_assertion(key: SigningKey, claims: dict[str, Any], now: int, lifetime: int = 60) -> str:
    """What a backend does (tests, docs/entitlement.md): an assertion for ``claims`` valid ``lifetime`` seconds."""
    body = {"aud": AUDIENCE, "iat": now, "exp": now + lifetime, **claims}
    return jwt.encode(body, key.secret, algorithm="HS256", headers={"kid": key.kid})
