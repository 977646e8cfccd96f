"""Where the signing key comes from: the Secrets Manager secret (deployed) or a local file (its twin).

Both hold the same JSON, ``{"kid": "...", "key": "<base64url>"}`` (what ``edge.keys.SigningKey.to_secret_json``
writes), and both offer one call, :meth:`KeySource.current`, which returns the key to sign new tokens with.

* :class:`SecretsManagerKeySource` reads the secret's ``AWSCURRENT`` version (Powertools' parameters utility) and
  keeps it for ``cache_seconds``, so a rotation (which moves ``AWSCURRENT`` to the new version) is picked up within
  that time. The rotation publishes
  ``k:<new kid>`` to the edge store before it promotes the new version, and keeps the old key there until every
  token signed with it has expired, so signing with a key up to ``cache_seconds`` old is always safe.
* :class:`FileKeySource` reads a local file and reads it again whenever the file changes (``python -m rotation
  rotate --secret-file`` rewrites it).
* :func:`key_source_from_env` picks one from ``SIGNING_SECRET_ARN`` or ``SIGNING_KEY_FILE``.

This is the only module that talks to Secrets Manager. Errors never contain key material.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
from botocore.exceptions import BotoCoreError, ClientError

from core.aws import secretsmanager_client
from edge.keys import InvalidKeyError, SigningKey, parse_key_text

SECRET_ARN_ENV = "SIGNING_SECRET_ARN"
KEY_FILE_ENV = "SIGNING_KEY_FILE"
CACHE_SECONDS_ENV = "SIGNING_KEY_CACHE_SECONDS"
DEFAULT_CACHE_SECONDS = 60.0
SECRET_SHAPE = '{"kid": "...", "key": "<base64url>"}'


class KeySourceError(Exception):
    """The signing key cannot be had right now. ``reason`` is a short code for metrics and responses."""

    reason = "unavailable"


class SigningKeyMissingError(KeySourceError):
    """The secret, its AWSCURRENT version, or the key file does not exist."""

    reason = "missing"


class SigningKeyMalformedError(KeySourceError):
    """The secret or key file exists but does not hold a usable ``{"kid", "key"}`` signing key."""

    reason = "malformed"


class KeySourceConfigError(ValueError):
    """The configuration does not name exactly one key source, or names it badly."""


class KeySource(Protocol):
    def current(self) -> SigningKey:
        """The key to sign new tokens with; :class:`KeySourceError` if there is none to be had."""
        ...


def parse_secret_text(text: str, source: str) -> SigningKey:
    """Parse the secret's JSON shape; :class:`SigningKeyMalformedError` naming ``source`` (never the content)."""
    if not text.strip().startswith("{"):
        raise SigningKeyMalformedError(f"{source} is not JSON; the signing secret must be {SECRET_SHAPE}")
    try:
        return parse_key_text(text)
    except InvalidKeyError as exc:
        raise SigningKeyMalformedError(f"{source} does not hold a usable signing key: {exc}") from None


class SecretsManagerKeySource:
    """The signing key in a Secrets Manager secret (its ``AWSCURRENT`` version), read through Powertools' parameters
    utility and kept for ``cache_seconds`` (its ``max_age``). A failed read is not cached: the next call tries again.

    ``client`` is a boto3 ``secretsmanager`` client (one in the secret's region is made on first use if not given).
    """

    def __init__(self, secret_id: str, client: Any = None, cache_seconds: float = DEFAULT_CACHE_SECONDS) -> None:
        if not secret_id:
            raise KeySourceConfigError("the signing secret id (name or ARN) must not be empty")
        if cache_seconds < 0:
            raise KeySourceConfigError(f"cache_seconds must be >= 0, not {cache_seconds}")
        self.secret_id = secret_id
        self.cache_seconds = cache_seconds
        self._client = client
        self._provider: SecretsProvider | None = None

    def __repr__(self) -> str:
        return f"SecretsManagerKeySource({self.secret_id!r})"

    @property
    def provider(self) -> SecretsProvider:
        if self._provider is None:
            self._provider = SecretsProvider(boto3_client=self._client or secretsmanager_client(self.secret_id))
        return self._provider

    def current(self) -> SigningKey:
        where = f"signing secret {self.secret_id!r}"
        try:
            # VersionStage explicitly: the key to sign with is AWSCURRENT, never AWSPENDING mid-rotation.
            text = self.provider.get(self.secret_id, max_age=math.ceil(self.cache_seconds), VersionStage="AWSCURRENT")
        except GetParameterError as exc:
            raise _read_error(where, exc) from None
        if not isinstance(text, str):
            raise SigningKeyMalformedError(f"{where} has no SecretString (binary secret?); it must be {SECRET_SHAPE}")
        return parse_secret_text(text, where)

    def invalidate(self) -> None:
        """Forget the cached key, so the next :meth:`current` reads the secret again."""
        self.provider.clear_cache()


def _read_error(where: str, exc: GetParameterError) -> KeySourceError:
    """What a failed read means: the SDK's error is the context Powertools raised its own in."""
    cause = exc.__context__
    if isinstance(cause, ClientError):
        error = cause.response.get("Error", {})
        code, message = str(error.get("Code", "")), str(error.get("Message", "")) or "(no message)"
        if code == "ResourceNotFoundException":
            return SigningKeyMissingError(f"{where} (AWSCURRENT) not found: {message}")
        return KeySourceError(f"cannot read {where}: {code}: {message}")
    detail = f"{type(cause).__name__}: {cause}" if isinstance(cause, BotoCoreError) else str(exc)
    return KeySourceError(f"cannot read {where}: {detail}")


class FileKeySource:
    """The signing key in a local file of the secret's shape; read again whenever the file changes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._cached: SigningKey | None = None
        self._signature: tuple[int, int, int] | None = None

    def __repr__(self) -> str:
        return f"FileKeySource({str(self.path)!r})"

    def current(self) -> SigningKey:
        with self._lock:
            where = f"signing key file {str(self.path)!r}"
            try:
                st = self.path.stat()
            except FileNotFoundError:
                raise SigningKeyMissingError(f"{where} does not exist") from None
            except OSError as exc:
                raise KeySourceError(f"cannot read {where}: {exc.strerror or exc}") from None
            signature = (st.st_mtime_ns, st.st_size, st.st_ino)
            if self._cached is not None and signature == self._signature:
                return self._cached
            try:
                text = self.path.read_text(encoding="utf-8")
            except FileNotFoundError:
                raise SigningKeyMissingError(f"{where} does not exist") from None
            except UnicodeDecodeError:
                raise SigningKeyMalformedError(f"{where} is not UTF-8 text; it must be {SECRET_SHAPE}") from None
            except OSError as exc:
                raise KeySourceError(f"cannot read {where}: {exc.strerror or exc}") from None
            key = parse_secret_text(text, where)
            self._cached, self._signature = key, signature
            return key


def key_source_from_config(
    *,
    secret_arn: str | None = None,
    key_file: str | os.PathLike[str] | None = None,
    cache_seconds: float = DEFAULT_CACHE_SECONDS,
    client: Any = None,
) -> KeySource:
    """The key source the configuration names: exactly one of a secret (name or ARN) and a key file."""
    if secret_arn and key_file:
        raise KeySourceConfigError(f"set either {SECRET_ARN_ENV} or {KEY_FILE_ENV}, not both")
    if secret_arn:
        return SecretsManagerKeySource(secret_arn, client=client, cache_seconds=cache_seconds)
    if key_file:
        return FileKeySource(key_file)
    raise KeySourceConfigError(
        f"no signing key configured: set {SECRET_ARN_ENV} (Secrets Manager secret) or {KEY_FILE_ENV} (local file)"
    )


def key_source_from_env(environ: Mapping[str, str] | None = None, *, client: Any = None) -> KeySource:
    """Pick the key source from ``SIGNING_SECRET_ARN`` / ``SIGNING_KEY_FILE`` (and ``SIGNING_KEY_CACHE_SECONDS``)."""
    env = os.environ if environ is None else environ
    raw_cache = env.get(CACHE_SECONDS_ENV, "").strip()
    try:
        cache_seconds = float(raw_cache) if raw_cache else DEFAULT_CACHE_SECONDS
    except ValueError:
        raise KeySourceConfigError(f"{CACHE_SECONDS_ENV}={raw_cache!r} is not a number of seconds") from None
    if not cache_seconds >= 0:  # also rejects NaN
        raise KeySourceConfigError(f"{CACHE_SECONDS_ENV} must be >= 0, not {raw_cache!r}")
    return key_source_from_config(
        secret_arn=env.get(SECRET_ARN_ENV, "").strip() or None,
        key_file=env.get(KEY_FILE_ENV, "").strip() or None,
        cache_seconds=cache_seconds,
        client=client,
    )

