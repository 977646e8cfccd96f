"""Issue playback tokens and tokenized URLs (URL/token contract in docs/contracts.md, rules in docs/edge-token.md)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import jwt

from core.session_ids import SESSION_ID
from edge.binding import Viewer, bind, validate_descriptor
from edge.keys import SigningKey
from edge.paths import is_safe_path, tokenized_path

DEFAULT_TTL_SECONDS = 3600
MAX_TTL_SECONDS = 7 * 24 * 3600


class TokenRequestError(ValueError):
    """A token request that cannot be honoured; the message says which field and why."""


def new_session_id() -> str:
    """A random session id: 24 characters of [A-Za-z0-9_-] (144 bits)."""
    return secrets.token_urlsafe(18)


def validate_session_id(session_id: str) -> str:
    if not SESSION_ID.match(session_id):
        raise TokenRequestError(f"session id {session_id!r} must be 16-32 characters of [A-Za-z0-9_-]")
    return session_id


def _validate_prefixes(name: str, prefixes: Sequence[str]) -> list[str]:
    for prefix in prefixes:
        if not isinstance(prefix, str) or not is_safe_path(prefix):
            raise TokenRequestError(f"{name} prefix {prefix!r} must be an absolute path without '//', '..' or escapes")
    return list(prefixes)


@dataclass(frozen=True)
class TokenRequest:
    """What to put in a token. `bindings` are descriptors (ip, ip/24, country, region, ua, h:<name>),
    bound to the values that `viewer` has."""

    session_id: str | None = None
    ttl_seconds: int = DEFAULT_TTL_SECONDS
    paths: Sequence[str] = ()
    exempt_paths: Sequence[str] = ()
    bindings: Sequence[str] = ()
    viewer: Viewer = field(default_factory=Viewer)
    not_before: int | None = None


@dataclass(frozen=True)
class IssuedToken:
    session_id: str
    jwt: str
    claims: dict[str, Any]

    @property
    def expires_at(self) -> int:
        return int(self.claims["exp"])

    @property
    def segment(self) -> str:
        """The first path segment: `<session id>.<jwt>`."""
        return f"{self.session_id}.{self.jwt}"

    def url_for(self, asset_url: str) -> str:
        """Insert the token segment in front of the asset path of an absolute URL or a path."""
        parts = urlsplit(asset_url)
        path = tokenized_path(self.session_id, self.jwt, parts.path or "/")
        return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def build_claims(request: TokenRequest, key: SigningKey, now: int) -> dict[str, Any]:
    session_id = validate_session_id(request.session_id) if request.session_id else new_session_id()
    if not isinstance(request.ttl_seconds, int) or not 0 < request.ttl_seconds <= MAX_TTL_SECONDS:
        raise TokenRequestError(f"ttl must be a whole number of seconds in 1..{MAX_TTL_SECONDS}")
    claims: dict[str, Any] = {"sid": session_id, "iat": now, "exp": now + request.ttl_seconds}
    if request.not_before is not None:
        claims["nbf"] = int(request.not_before)
    if request.paths:
        claims["paths"] = _validate_prefixes("path", request.paths)
    if request.exempt_paths:
        claims["exc"] = _validate_prefixes("exempt path", request.exempt_paths)
    if request.bindings:
        descriptors = [validate_descriptor(d) for d in request.bindings]
        if len(set(descriptors)) != len(descriptors):
            raise TokenRequestError(f"bindings repeat a descriptor: {descriptors}")
        claims["bnd"] = descriptors
        claims["bh"] = bind(key.secret, descriptors, request.viewer)
    return claims


def sign_claims(claims: dict[str, Any], key: SigningKey) -> str:
    return jwt.encode(claims, key.secret, algorithm="HS256", headers={"kid": key.kid, "typ": "JWT"})


def issue_token(request: TokenRequest, key: SigningKey, now: int | None = None) -> IssuedToken:
    claims = build_claims(request, key, int(time.time()) if now is None else now)
    return IssuedToken(session_id=claims["sid"], jwt=sign_claims(claims, key), claims=claims)
