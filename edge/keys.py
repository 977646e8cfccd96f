"""Signing keys: generate, serialise in the Secrets Manager secret's shape, load from a file."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from core.b64 import b64url_decode, b64url_encode

MIN_KEY_BYTES = 32
KID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")


class InvalidKeyError(ValueError):
    """A key or key file that cannot be used; the message says why."""


@dataclass(frozen=True)
class SigningKey:
    """An HMAC-SHA256 signing key and the id (`kid`) the edge looks it up by (`k:<kid>`)."""

    kid: str
    secret: bytes

    def __post_init__(self) -> None:
        if not KID_PATTERN.match(self.kid):
            raise InvalidKeyError(f"kid {self.kid!r} must be 1-64 characters of [A-Za-z0-9_-]")
        if len(self.secret) < MIN_KEY_BYTES:
            raise InvalidKeyError(f"key for kid {self.kid!r} has {len(self.secret)} bytes; at least {MIN_KEY_BYTES} required")

    @property
    def encoded(self) -> str:
        """The key as the KeyValueStore holds it: unpadded base64url."""
        return b64url_encode(self.secret)

    @property
    def store_key(self) -> str:
        return f"k:{self.kid}"

    def to_secret_json(self) -> str:
        """The shape of the Secrets Manager secret and of a local secret file."""
        return json.dumps({"kid": self.kid, "key": self.encoded})

    def __repr__(self) -> str:  # never print key material
        return f"SigningKey(kid={self.kid!r})"


def new_kid() -> str:
    return secrets.token_urlsafe(9)


def generate_key(kid: str | None = None, num_bytes: int = MIN_KEY_BYTES) -> SigningKey:
    return SigningKey(kid=kid or new_kid(), secret=secrets.token_bytes(max(num_bytes, MIN_KEY_BYTES)))


def decode_key(encoded: str, kid: str) -> SigningKey:
    try:
        secret = b64url_decode(encoded.strip())
    except ValueError as exc:
        raise InvalidKeyError(f"key for kid {kid!r} is not unpadded base64url: {exc}") from exc
    return SigningKey(kid=kid, secret=secret)


def parse_key_text(text: str, kid: str | None = None) -> SigningKey:
    """Parse a key file's text: a JSON secret `{"kid", "key"}`, or a raw base64url key (then `kid` is required)."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            doc = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise InvalidKeyError(f"key file is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("kid"), str) or not isinstance(doc.get("key"), str):
            raise InvalidKeyError('JSON key file must be {"kid": "...", "key": "<base64url>"}')
        if kid is not None and kid != doc["kid"]:
            raise InvalidKeyError(f"--kid {kid!r} does not match the key file's kid {doc['kid']!r}")
        return decode_key(doc["key"], doc["kid"])
    if kid is None:
        raise InvalidKeyError("a raw key file needs --kid (or use a JSON secret file with a kid)")
    return decode_key(stripped, kid)


def load_key_file(path: str | Path, kid: str | None = None) -> SigningKey:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidKeyError(f"cannot read key file {path}: {exc.strerror}") from exc
    return parse_key_text(text, kid)
