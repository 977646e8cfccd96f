"""Token issuing rules: what a caller may ask for, how the viewer is recognised, when to refuse.

Domain code only (no boto3, no HTTP): ``edge/issuer_handler.py`` parses the Lambda event, calls :func:`issue`, and
turns the exceptions here into responses.

* :class:`IssueRequest` is the request body of ``POST /tokens``.
* :func:`viewer_from_request` builds the :class:`~edge.binding.Viewer` from the headers CloudFront adds
  (``CloudFront-Viewer-Address``, ``CloudFront-Viewer-Country``, ``CloudFront-Viewer-Country-Region``) and
  ``User-Agent``; the request's source IP is used only when ``CloudFront-Viewer-Address`` is absent.
* :func:`token_request` maps a request and a viewer to an :class:`~edge.tokens.TokenRequest`; a binding whose
  viewer attribute is missing is an error, never silently dropped.
* :func:`ensure_not_revoked`: a session id that is currently revoked (``r:<sid>`` in the edge store) gets no new
  token, so a revocation cannot be undone by asking for a fresh URL.
* With an :class:`IssueLedger` (the ledger of revocation/, in AWS), :func:`issue` records each token's expiry
  against its session before handing it out, and the ledger refuses a session whose revocation no operator lifted:
  a revocation then lasts until the latest token ever issued for the session expires (plus a margin), and a
  revoked session gets no new token once its revocation has expired either.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Protocol
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.session_ids import SESSION_ID
from edge.binding import LOCATION_CODE, BindingError, Viewer, attribute_value, parse_ip
from edge.entitlement import Entitlement, derive_session_id
from edge.keys import SigningKey
from edge.paths import MAX_TOKEN_SEGMENT, any_prefix_matches, is_safe_path
from edge.tokens import MAX_TTL_SECONDS, TokenRequest, TokenRequestError, issue_token
from edge.verify import KeyValueReader, revocation_active

VIEWER_ADDRESS_HEADER = "cloudfront-viewer-address"
BIND_NAMES = ("ip", "ip-prefix", "country", "region", "ua")
HEADER_BIND = re.compile(r"^header:([A-Za-z0-9-]{1,64})\Z")
PREFIX_FOR_FAMILY = {4: 24, 6: 48}
MAX_PREFIXES = 32
MAX_PREFIX_LENGTH = 512
MAX_BINDINGS = 16
MAX_URL_LENGTH = 2048

_PORT = re.compile(r"^[0-9]{1,5}\Z")


# ---------------------------------------------------------------------------------------------------------------
# Errors: the handler maps each to a status; ``reason`` is the code in the response and the metric dimension.


class IssueRejected(Exception):
    reason = "rejected"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason

    @property
    def message(self) -> str:
        return str(self)


class InvalidIssueRequest(IssueRejected):
    """The request cannot be honoured as asked (400)."""

    reason = "invalid-request"


class MissingViewerAttribute(InvalidIssueRequest):
    """A binding was asked for whose viewer attribute the request does not carry (400)."""

    reason = "missing-viewer-attribute"


class NotEntitled(IssueRejected):
    """The request asks for more than the backend's entitlement allows (403)."""

    reason = "not-entitled"


class SessionRevoked(IssueRejected):
    """The session id is currently revoked (409)."""

    reason = "revoked"


class RevocationCheckFailed(IssueRejected):
    """The revocation list could not be read, so no token is issued for a caller-chosen session id (503)."""

    reason = "store-unavailable"


# ---------------------------------------------------------------------------------------------------------------
# The request.


class IssueRequest(BaseModel):
    """Body of ``POST /tokens``.

    * ``asset_url``: the asset to play, an ``https://`` URL or an absolute path (the token goes in front of its path).
    * ``session_id``: reuse a session id (16-32 of ``[A-Za-z0-9_-]``); omitted, a random one is made.
    * ``ttl_seconds``: token lifetime in seconds, >= 1; omitted, the issuer's default; at most the issuer's maximum.
    * ``path_prefixes``: the asset paths the token opens (absent: all); ``asset_url`` must be inside them.
    * ``exempt_prefixes``: paths where viewer binding is not checked (e.g. keys fetched by a license server).
    * ``bind``: viewer attributes to bind: ``ip``, ``ip-prefix`` (the viewer's /24 for IPv4, /48 for IPv6),
      ``country``, ``region``, ``ua`` (User-Agent), ``header:<name>``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    asset_url: Annotated[str, Field(min_length=1, max_length=MAX_URL_LENGTH)]
    session_id: str | None = None
    # The upper bound is the issuer's (IssuePolicy.max_ttl_seconds, at most edge.tokens.MAX_TTL_SECONDS), checked
    # in token_request so that the error names the limit that applies.
    ttl_seconds: Annotated[int, Field(strict=True, ge=1)] | None = None
    path_prefixes: Annotated[list[str], Field(min_length=1, max_length=MAX_PREFIXES)] | None = None
    exempt_prefixes: Annotated[list[str], Field(max_length=MAX_PREFIXES)] | None = None
    bind: Annotated[list[str], Field(max_length=MAX_BINDINGS)] = []

    @field_validator("asset_url")
    @classmethod
    def _check_asset_url(cls, value: str) -> str:
        asset_path(value)
        return value

    @field_validator("session_id")
    @classmethod
    def _check_session_id(cls, value: str | None) -> str | None:
        if value is not None and not SESSION_ID.match(value):
            raise ValueError("session_id must be 16-32 characters of [A-Za-z0-9_-]")
        return value

    @field_validator("path_prefixes", "exempt_prefixes")
    @classmethod
    def _check_prefixes(cls, value: list[str] | None) -> list[str] | None:
        for prefix in value or ():
            if len(prefix) > MAX_PREFIX_LENGTH or not is_safe_path(prefix):
                raise ValueError(
                    f"prefix {prefix[:80]!r} must be an absolute path (starting with '/') of at most"
                    f" {MAX_PREFIX_LENGTH} characters, without '//', '.', '..', backslashes or encoded separators"
                )
        return value

    @field_validator("bind")
    @classmethod
    def _check_bind(cls, value: list[str]) -> list[str]:
        seen: set[str] = set()
        for name in value:
            if name not in BIND_NAMES and not HEADER_BIND.match(name):
                raise ValueError(
                    f"unknown binding {name[:80]!r}: use {', '.join(BIND_NAMES)} or header:<name>"
                    " (name of 1-64 characters of [A-Za-z0-9-])"
                )
            normal = name.lower()
            if normal in seen:
                raise ValueError(f"binding {name!r} is listed twice")
            seen.add(normal)
        return value

    @model_validator(mode="after")
    def _asset_in_scope(self) -> IssueRequest:
        if self.path_prefixes and not any_prefix_matches(self.path_prefixes, asset_path(self.asset_url)):
            raise ValueError(
                f"asset_url path {asset_path(self.asset_url)[:200]!r} is outside path_prefixes: the edge would refuse it"
            )
        return self


def asset_path(asset_url: str) -> str:
    """The path of an ``https://`` URL or of an absolute path; ValueError saying why when it is neither."""
    if any(ch.isspace() for ch in asset_url):
        raise ValueError("asset_url must not contain whitespace")
    parts = urlsplit(asset_url)
    if asset_url.startswith("/"):
        if parts.scheme or parts.netloc:
            raise ValueError("asset_url must be an https:// URL or an absolute path such as /vod/title/master.m3u8")
    elif parts.scheme.lower() != "https" or not parts.hostname:
        raise ValueError("asset_url must be an https:// URL or an absolute path such as /vod/title/master.m3u8")
    elif parts.username is not None or parts.password is not None:
        raise ValueError("asset_url must not carry user information")
    path = parts.path or "/"
    if not is_safe_path(path):
        raise ValueError(
            f"asset_url path {path[:200]!r} must not contain '//', '.', '..', backslashes or encoded separators"
        )
    return path


# ---------------------------------------------------------------------------------------------------------------
# The viewer.


def parse_viewer_address(value: str) -> str | None:
    """The IP address in a ``CloudFront-Viewer-Address`` value (``ip:port``), or None when it is not one.

    CloudFront writes IPv6 without brackets (``2001:db8::1:443``), so the port is after the *last* colon. An
    IPv4-mapped IPv6 address is returned as its IPv4 address, the way the edge sees it.
    """
    text = value.strip()
    if text.startswith("["):  # tolerate the bracketed form too: [2001:db8::1]:443
        host, sep, port = text[1:].partition("]:")
        if not sep:
            return None
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            return None
    if not _PORT.match(port) or int(port) > 65535:
        return None
    try:
        return str(parse_ip(host))
    except ValueError:
        return None


def viewer_from_request(headers: Mapping[str, str], source_ip: str | None = None) -> Viewer:
    """The viewer as the edge will see it, from the request CloudFront forwarded to the issuer.

    ``CloudFront-Viewer-Address`` decides the address when present (a malformed one means no address: the source IP
    would then be CloudFront's, not the viewer's); ``source_ip`` is used only when that header is absent.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    if VIEWER_ADDRESS_HEADER in lowered:
        ip = parse_viewer_address(lowered[VIEWER_ADDRESS_HEADER])
    elif source_ip:
        try:
            ip = str(parse_ip(source_ip))
        except ValueError:
            ip = None
    else:
        ip = None
    return Viewer(ip=ip, headers=lowered)


_ATTRIBUTE_SOURCES = {
    "ip": "viewer IP address (from CloudFront-Viewer-Address, or the source IP when that header is absent)",
    "ip-prefix": "viewer IP address (from CloudFront-Viewer-Address, or the source IP when that header is absent)",
    "country": "CloudFront-Viewer-Country header holding one ISO 3166-1 alpha-2 code",
    "region": "CloudFront-Viewer-Country-Region header holding one region code (1-3 letters or digits)",
    "ua": "User-Agent header",
}


def descriptor_for(name: str, viewer: Viewer) -> str:
    """The token's binding descriptor for a requested binding name, given this viewer."""
    if name == "ip-prefix":
        version = _ip_version(viewer)
        if version is None:
            raise MissingViewerAttribute(f"cannot bind 'ip-prefix': the request has no {_attribute_source(name)}")
        return f"ip/{PREFIX_FOR_FAMILY[version]}"
    match = HEADER_BIND.match(name)
    if match:
        return f"h:{match.group(1).lower()}"
    if name in BIND_NAMES:
        return name
    raise InvalidIssueRequest(f"unknown binding {name!r}")


def descriptors_for(names: Sequence[str], viewer: Viewer) -> list[str]:
    """Descriptors for all requested bindings; :class:`MissingViewerAttribute` naming every one the viewer lacks."""
    lacking = [name for name in names if not _viewer_has(name, viewer)]
    if lacking:
        raise MissingViewerAttribute(
            "cannot bind " + "; ".join(f"{name!r}: the request has no {_attribute_source(name)}" for name in lacking)
        )
    descriptors = [descriptor_for(name, viewer) for name in names]
    if len(set(descriptors)) != len(descriptors):
        raise InvalidIssueRequest(f"bindings repeat a viewer attribute: {list(names)}")
    return descriptors


def _viewer_has(name: str, viewer: Viewer) -> bool:
    if name == "ip-prefix":
        return _ip_version(viewer) is not None
    value = attribute_value(descriptor_for(name, viewer), viewer)
    if name in LOCATION_CODE:
        return value is not None and LOCATION_CODE[name].match(value) is not None
    return value is not None


def _ip_version(viewer: Viewer) -> int | None:
    """4 or 6 for the viewer's address (4 for an IPv4-mapped IPv6 address), None without a usable address."""
    if not viewer.ip:
        return None
    try:
        return parse_ip(viewer.ip).version
    except ValueError:
        return None


def _attribute_source(name: str) -> str:
    match = HEADER_BIND.match(name)
    return f"{match.group(1)} header" if match else _ATTRIBUTE_SOURCES[name]


# ---------------------------------------------------------------------------------------------------------------
# Issuing.


class KeyProvider(Protocol):
    """Anything that hands out the current signing key (``edge.key_source.KeySource``)."""

    def current(self) -> SigningKey: ...


@dataclass(frozen=True)
class IssuePolicy:
    """The issuer's limits: the lifetime given when none is asked for, the longest one allowed, whether every token
    must be scoped to path prefixes, and the bindings every token must carry."""

    default_ttl_seconds: int = 3600
    max_ttl_seconds: int = 24 * 3600
    require_path_scope: bool = False
    required_bindings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 1 <= self.max_ttl_seconds <= MAX_TTL_SECONDS:
            raise ValueError(f"max_ttl_seconds must be in 1..{MAX_TTL_SECONDS}")
        if not 1 <= self.default_ttl_seconds <= self.max_ttl_seconds:
            raise ValueError(f"default_ttl_seconds must be in 1..max_ttl_seconds ({self.max_ttl_seconds})")

    def ttl_for(self, request: IssueRequest) -> int:
        if request.ttl_seconds is None:
            return self.default_ttl_seconds
        if request.ttl_seconds > self.max_ttl_seconds:
            raise InvalidIssueRequest(
                f"ttl_seconds {request.ttl_seconds} exceeds this issuer's maximum of {self.max_ttl_seconds}",
                reason="ttl-too-large",
            )
        return request.ttl_seconds


@dataclass(frozen=True)
class IssuedUrl:
    url: str
    session_id: str
    expires_at: int
    kid: str

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "session_id": self.session_id, "expires_at": self.expires_at, "kid": self.kid}


def token_request(request: IssueRequest, viewer: Viewer, policy: IssuePolicy = IssuePolicy()) -> TokenRequest:
    """Map a validated request and the viewer to what goes in the token; refuse what the policy requires and the
    request lacks (a path scope, a binding)."""
    if policy.require_path_scope and not request.path_prefixes:
        raise InvalidIssueRequest("this issuer requires path_prefixes (a token for every path is refused)",
                                  reason="path-scope-required")
    missing = [name for name in policy.required_bindings if name not in request.bind]
    if missing:
        raise InvalidIssueRequest(f"this issuer requires the binding(s) {', '.join(missing)} in bind",
                                  reason="binding-required")
    return TokenRequest(
        session_id=request.session_id,
        ttl_seconds=policy.ttl_for(request),
        paths=tuple(request.path_prefixes or ()),
        exempt_paths=tuple(request.exempt_prefixes or ()),
        bindings=tuple(descriptors_for(request.bind, viewer)),
        viewer=viewer,
    )


def ensure_not_revoked(session_id: str | None, store: KeyValueReader, now: float) -> None:
    """Refuse a session id that is revoked now; fail closed (:class:`RevocationCheckFailed`) if the store errs."""
    if session_id is None:
        return  # a fresh random session id cannot have been revoked
    try:
        value = store.get(f"r:{session_id}")
    except Exception as exc:  # noqa: BLE001 - any failure to read the revocation list refuses the token
        raise RevocationCheckFailed(f"cannot read the revocation list: {type(exc).__name__}: {exc}") from exc
    if revocation_active(value, now):
        raise SessionRevoked(f"session {session_id!r} is revoked; request a token for a new session")


def entitled_request(request: IssueRequest, entitlement: Entitlement, policy: IssuePolicy) -> IssueRequest:
    """The request as the backend's ``entitlement`` allows it: the session id the issuer derives from account and
    device, path prefixes inside the entitlement's (its own when the request names none), the bindings it requires,
    and a lifetime within its cap. Raises :class:`InvalidIssueRequest` or :class:`NotEntitled`."""
    if request.session_id is not None:
        raise InvalidIssueRequest("with entitlements the issuer chooses the session id: send no session_id",
                                  reason="session-id-not-allowed")
    prefixes = list(request.path_prefixes or entitlement.paths)
    outside = [p for p in prefixes if not entitlement.allows_prefix(p)]
    if outside:
        raise NotEntitled(f"path prefix(es) {', '.join(outside)} lie outside the entitlement's "
                          f"{', '.join(entitlement.paths)}", reason="outside-entitlement")
    missing = [name for name in entitlement.bindings if name not in request.bind]
    if missing:
        raise NotEntitled(f"the entitlement requires the binding(s) {', '.join(missing)} in bind",
                          reason="binding-required")
    ttl = request.ttl_seconds
    cap = entitlement.max_ttl_seconds
    if cap is not None:
        if ttl is not None and ttl > cap:
            raise NotEntitled(f"ttl_seconds {ttl} exceeds the entitlement's {cap}", reason="ttl-over-entitlement")
        ttl = min(ttl or policy.default_ttl_seconds, cap)
    return request.model_copy(update={"session_id": derive_session_id(entitlement.account, entitlement.device),
                                      "path_prefixes": prefixes, "ttl_seconds": ttl})


class IssueLedger(Protocol):
    """What the issuer needs of the ledger (:class:`revocation.ledger.Ledger` has it): record an issued token's
    expiry, raising for a session it refuses (an exception with ``refused = True``) and for a ledger it cannot
    reach (any other exception)."""

    def record_issue(self, session_id: str, expires_at: int, *, now: float | None = None) -> int: ...


def issue(
    request: IssueRequest,
    viewer: Viewer,
    key: SigningKey | KeyProvider,
    store: KeyValueReader,
    policy: IssuePolicy = IssuePolicy(),
    now: int | None = None,
    ledger: IssueLedger | None = None,
    entitlement: Entitlement | None = None,
) -> IssuedUrl:
    """Issue a tokenized URL for ``request`` and ``viewer``, signed with ``key``; refuse revoked sessions.

    The checks run cheapest first and the key is fetched last (``key.current()`` for a key source), so a bad request
    or a revoked session is refused even while the key source is down. With a ``ledger``, the token's expiry is
    recorded against its session before the URL is returned (fail closed: no record, no token). With an
    ``entitlement`` (verified by the caller), the request is held to it (:func:`entitled_request`).
    """
    now = int(time.time()) if now is None else now
    if entitlement is not None:
        request = entitled_request(request, entitlement, policy)
    wanted = token_request(request, viewer, policy)
    ensure_not_revoked(request.session_id, store, now)
    if not isinstance(key, SigningKey):
        key = key.current()
    try:
        issued = issue_token(wanted, key, now=now)
    except (TokenRequestError, BindingError) as exc:
        raise InvalidIssueRequest(str(exc)) from exc
    if len(issued.segment) > MAX_TOKEN_SEGMENT:
        raise InvalidIssueRequest(
            f"the token would be {len(issued.segment)} characters; the edge accepts at most {MAX_TOKEN_SEGMENT}"
            " (use fewer or shorter path_prefixes / exempt_prefixes / bindings)",
            reason="token-too-large",
        )
    if ledger is not None:
        try:
            ledger.record_issue(issued.session_id, issued.expires_at, now=now)
        except Exception as exc:  # noqa: BLE001 - a refusal, or a ledger that cannot be reached: no token either way
            if getattr(exc, "refused", False):
                raise SessionRevoked(
                    f"session {issued.session_id!r} was revoked and no operator lifted it; request a new session"
                ) from exc
            raise RevocationCheckFailed(f"cannot record the token in the ledger: {type(exc).__name__}: {exc}") from exc
    return IssuedUrl(
        url=issued.url_for(request.asset_url), session_id=issued.session_id, expires_at=issued.expires_at, kid=key.kid
    )

