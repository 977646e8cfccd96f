"""Viewer binding: which viewer attributes a token is bound to, and the HMAC that binds them.

The bound values never appear in the token: only the descriptors (`bnd`) and one HMAC over the canonical
values (`bh`), keyed with the signing key so that nobody can test guesses (the IPv4 space is small).
The rules are in docs/edge-token.md; edge/viewer_request.js implements the same.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from core.b64 import b64url_encode

MESSAGE_PREFIX = "pb1"
HEADER_NAME = re.compile(r"^[a-z0-9-]{1,64}\Z")
IP_PREFIX = re.compile(r"^ip/([0-9]{1,3})\Z")
SIMPLE_DESCRIPTORS = {"ip", "country", "region", "ua"}
COUNTRY_HEADER = "cloudfront-viewer-country"
REGION_HEADER = "cloudfront-viewer-country-region"
DEFAULT_PREFIX = {4: 24, 6: 48}
# The shapes CloudFront gives these headers: ISO 3166-1 alpha-2, and the first-level ISO 3166-2 subdivision code
# (up to three characters). A value of another shape was not set by CloudFront alone (e.g. "DE,FR": two copies
# joined by the function URL), so the issuer will not bind to it.
LOCATION_CODE = {"country": re.compile(r"^[A-Z]{2}\Z"), "region": re.compile(r"^[A-Z0-9]{1,3}\Z")}


class BindingError(ValueError):
    """A binding request that cannot be honoured (bad descriptor, bad address)."""


def validate_descriptor(descriptor: str) -> str:
    if descriptor in SIMPLE_DESCRIPTORS:
        return descriptor
    match = IP_PREFIX.match(descriptor)
    if match and 0 <= int(match.group(1)) <= 128 and str(int(match.group(1))) == match.group(1):
        return descriptor
    if descriptor.startswith("h:") and HEADER_NAME.match(descriptor[2:]):
        return descriptor
    raise BindingError(
        f"unknown binding {descriptor!r}: use ip, ip/N, country, region, ua or h:<lower-case header name>"
    )


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Parse an address in any notation; an IPv4-mapped IPv6 address is its IPv4 address."""
    address = ipaddress.ip_address(text.strip())
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def canonical_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    return address.exploded


def canonical_ip(text: str, prefix: int | None = None) -> str | None:
    """The canonical spelling of an address (prefix None) or of its /prefix network; None if it has none."""
    if "%" in text:  # a scoped IPv6 address (fe80::1%eth0) is never a viewer's public address
        return None
    try:
        address = parse_ip(text)
    except ValueError:
        return None
    if prefix is None:
        return canonical_address(address)
    if prefix > address.max_prefixlen:
        return None
    network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    return f"{canonical_address(network.network_address)}/{prefix}"


HeaderValue = str | tuple[str, ...]


@dataclass(frozen=True)
class Viewer:
    """What the edge knows of a viewer: the address and the request headers (names lower case).

    A header the request carries more than once is kept as a tuple of its values and counts as *absent* for a
    binding: the viewer may have sent its own copy of a header CloudFront adds, and nothing says which copy
    comes first (docs/edge-token.md, "Which headers a binding trusts").
    """

    ip: str | None = None
    headers: Mapping[str, HeaderValue] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        value = self.headers.get(name.lower())
        return value if isinstance(value, str) else None

    @classmethod
    def of(cls, ip: str | None, headers: Mapping[str, HeaderValue | list[str]] | None = None) -> "Viewer":
        return cls(ip=ip, headers={k.lower(): _one_or_all(v) for k, v in (headers or {}).items()})


def _one_or_all(value: HeaderValue | list[str]) -> HeaderValue:
    if isinstance(value, str):
        return value
    values = tuple(value)
    return values[0] if len(values) == 1 else values


def attribute_value(descriptor: str, viewer: Viewer) -> str | None:
    """The canonical value of one bound attribute for this viewer, or None when the viewer lacks it."""
    if descriptor == "ip":
        return canonical_ip(viewer.ip) if viewer.ip else None
    match = IP_PREFIX.match(descriptor)
    if match:
        return canonical_ip(viewer.ip, int(match.group(1))) if viewer.ip else None
    if descriptor == "country":
        value = viewer.header(COUNTRY_HEADER)
        return value.upper() if value else None
    if descriptor == "region":
        value = viewer.header(REGION_HEADER)
        return value.upper() if value else None
    if descriptor == "ua":
        return viewer.header("user-agent") or None
    if descriptor.startswith("h:"):
        return viewer.header(descriptor[2:]) or None
    raise BindingError(f"unknown binding {descriptor!r}")


def binding_message(descriptors: Sequence[str], viewer: Viewer) -> str | None:
    """The message the binding HMAC covers; None when any bound attribute is missing (never skipped)."""
    parts = [MESSAGE_PREFIX]
    for descriptor in descriptors:
        value = attribute_value(descriptor, viewer)
        if value is None:
            return None
        parts.append(f"{descriptor}={value}")
    return "\n".join(parts)


def binding_mac(key: bytes, message: str) -> str:
    return b64url_encode(hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest())


def bind(key: bytes, descriptors: Sequence[str], viewer: Viewer) -> str:
    """The `bh` claim for these descriptors and this viewer; BindingError if the viewer lacks an attribute."""
    for descriptor in descriptors:
        validate_descriptor(descriptor)
    message = binding_message(descriptors, viewer)
    if message is None:
        missing = [d for d in descriptors if attribute_value(d, viewer) is None]
        raise BindingError(f"cannot bind {', '.join(missing)}: the viewer has no such attribute")
    return binding_mac(key, message)


def binding_matches(key: bytes, descriptors: Sequence[str], expected_mac: str, viewer: Viewer) -> bool:
    message = binding_message(descriptors, viewer)
    return message is not None and hmac.compare_digest(binding_mac(key, message).encode(), expected_mac.encode())


def ip_binding(spec: str) -> tuple[str, str]:
    """Turn a `--bind-ip` value into (descriptor, address the viewer is taken to have).

    `203.0.113.7` binds exactly; `203.0.113.0/24` or `2001:db8:1::/48` binds to the prefix.
    """
    try:
        if "/" not in spec:
            return "ip", str(parse_ip(spec))
        network = ipaddress.ip_network(spec.strip(), strict=False)
    except ValueError as exc:
        raise BindingError(f"--bind-ip {spec!r} is neither an IP address nor a CIDR prefix") from exc
    address = network.network_address
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        raise BindingError(f"bind to the IPv4 prefix instead of the IPv4-mapped form {spec!r}")
    return f"ip/{network.prefixlen}", str(address)
