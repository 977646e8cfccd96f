"""Read a token's ``sid`` and ``exp`` from a logged request WITHOUT verifying it, and turn ``exp`` into a revocation
expiry.

Why reading without verifying is safe here: detection only counts requests the edge allowed (2xx), and the edge
allows a request only after checking the token's signature, so the ``exp`` of a token seen in an allowed request is
the one the issuer signed. A forged token never reaches this code through an allowed request; and everything here is
robust to garbage anyway (``None``, never an exception), because it also reads denied lines and hand-typed input.

A revocation lasts until the token it targets expires plus a margin (docs/contracts.md, KeyValueStore keys). The margin must cover the
edge's clock skew allowance (:data:`edge.verify.SKEW_SECONDS`: the edge accepts a token until ``exp + 30 s``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from core.b64 import b64url_decode
from core.session_ids import SESSION_ID, is_session_id
from edge.paths import MAX_TOKEN_SEGMENT
from edge.tokens import MAX_TTL_SECONDS
from edge.verify import SKEW_SECONDS
from revocation.ledger.base import ISSUED_MARGIN_SECONDS

__all__ = [
    "DEFAULT_MARGIN_SECONDS",
    "MAX_EPOCH",
    "TokenInfo",
    "expiry_for_session",
    "read_token",
    "revocation_expiry",
    "token_expiry",
]

DEFAULT_MARGIN_SECONDS = ISSUED_MARGIN_SECONDS  # the same margin for issued tokens and tokens seen in logs
"""Added to a token's ``exp``: covers the edge's 30 s clock skew allowance with room for clock drift."""

MAX_EPOCH = 2**53
"""Anything larger is not a plausible epoch second (and not exactly representable in JavaScript)."""

_PART = re.compile(r"^[A-Za-z0-9_-]+\Z")


@dataclass(frozen=True)
class TokenInfo:
    """What a logged token says about itself (unverified): its session id and expiry."""

    session_id: str | None
    exp: int | None


def read_token(text: str | None) -> TokenInfo | None:
    """``sid`` and ``exp`` of the token in ``text``; ``None`` when there is no readable token.

    ``text`` may be a logged URI (``/<sid>.<jwt>/<asset path>``, as in ``cs-uri-stem``), a full URL, the token
    segment (``<sid>.<jwt>``) or a bare JWT (``header.payload.signature``). The session id is the URI's prefix when
    there is one, else the payload's ``sid``; when both are present they must agree (the edge denies a mismatch, so a
    mismatching token is not one a viewer was served with). ``exp`` is ``None`` when the payload has no plausible
    numeric ``exp`` (missing, not a number, a boolean, NaN, negative, absurdly large); fractions are rounded up.
    """
    if not isinstance(text, str):
        return None
    segment = _token_segment(text.strip())
    if segment is None or len(segment) > MAX_TOKEN_SEGMENT:
        return None
    parts = segment.split(".")
    prefix: str | None = None
    if len(parts) == 4:
        prefix, parts = parts[0], parts[1:]
        if not SESSION_ID.match(prefix):
            return None
    if len(parts) != 3 or not all(_PART.match(part) for part in parts):
        return None
    payload = _json_object(parts[1])
    if payload is None:
        return None
    claim_sid = payload.get("sid")
    if claim_sid is not None and not is_session_id(claim_sid):
        claim_sid = None
    if prefix is not None and claim_sid is not None and claim_sid != prefix:
        return None
    return TokenInfo(session_id=prefix or claim_sid, exp=_epoch(payload.get("exp")))


def token_expiry(text: str | None) -> int | None:
    """The unverified ``exp`` of the token in ``text`` (see :func:`read_token`), or ``None``."""
    info = read_token(text)
    return info.exp if info is not None else None


def revocation_expiry(token_exp: float, margin: int = DEFAULT_MARGIN_SECONDS) -> int:
    """When a revocation of a token expiring at ``token_exp`` may end: ``ceil(token_exp) + margin``.

    ``margin`` must be at least the edge's clock skew allowance (:data:`edge.verify.SKEW_SECONDS`), otherwise the edge
    would still accept the token for a few seconds after its revocation had gone.
    """
    if isinstance(margin, bool) or not isinstance(margin, int):
        raise TypeError(f"margin must be whole seconds (int), not {type(margin).__name__}")
    if margin < SKEW_SECONDS:
        raise ValueError(
            f"margin must be at least {SKEW_SECONDS} s: the edge accepts a token until {SKEW_SECONDS} s after its exp"
        )
    exp = _epoch(token_exp)
    if exp is None:
        raise ValueError(f"token_exp must be a plausible epoch second, not {token_exp!r}")
    return exp + margin


def expiry_for_session(
    token_exps: Iterable[float | None],
    *,
    now: float,
    margin: int = DEFAULT_MARGIN_SECONDS,
    max_token_lifetime: int = MAX_TTL_SECONDS,
) -> int:
    """The revocation expiry for a session whose logged tokens expire at ``token_exps``: the latest ``exp`` plus the
    margin.

    Unreadable expiries (``None``) are ignored. When none is readable, or the latest is beyond what any token can
    live (``now + max_token_lifetime``), the longest possible token lifetime from ``now`` is used instead: a
    revocation must never end before the token it targets does.
    """
    ceiling = math.ceil(now) + max_token_lifetime
    readable = [exp for exp in (_epoch(value) for value in token_exps) if exp is not None]
    latest = max(readable) if readable else ceiling
    return revocation_expiry(min(latest, ceiling), margin)


# ---------------------------------------------------------------------------------------------------------------


def _token_segment(text: str) -> str | None:
    """The ``<sid>.<jwt>`` or bare-JWT part of a URI, URL, segment or token."""
    if "://" in text:
        try:
            text = urlsplit(text).path
        except ValueError:
            return None
    if text.startswith("/"):
        text = text[1:]
    segment = text.split("/", 1)[0].split("?", 1)[0]
    return segment or None


def _json_object(part: str) -> dict[str, Any] | None:
    try:
        value = json.loads(b64url_decode(part).decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _epoch(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value) or value < 0 or value > MAX_EPOCH:
        return None
    return math.ceil(value)
