"""The signing secret behind one small interface: Secrets Manager, and a local file as its twin.

Both keep versions the way a rotation needs them: one AWSCURRENT value (what the issuer signs with) and at most one
AWSPENDING value, identified by the rotation's token (Secrets Manager's ``ClientRequestToken``).

* :class:`SecretsManagerSecret`: every read passes ``VersionStage`` explicitly (moto, and a careless caller, would
  otherwise get a stale or the wrong version); the pending value is written with the token as ``ClientRequestToken``
  and stage AWSPENDING; promotion moves AWSCURRENT with ``UpdateSecretVersionStage``.
* :class:`LocalSecretFile`: the current value is the file itself (so ``python -m edge sign --key-file F`` reads it),
  the pending value and its token sit in ``<file>.pending.json``; promotion atomically replaces the file and removes
  the sidecar. Every write is temp file + fsync + rename.

No value ever appears in an error message or a log line.
"""

from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from core.aws import secretsmanager_client
from core.files import replace_file

AWSCURRENT = "AWSCURRENT"
AWSPENDING = "AWSPENDING"


class SecretError(Exception):
    """The secret cannot be read or written; the message says which secret and why (never its value)."""


class SecretNotFound(SecretError):
    """The secret itself does not exist."""


@dataclass(frozen=True)
class SecretState:
    """What DescribeSecret tells a rotation: is rotation on, and which stages each version carries."""

    rotation_enabled: bool
    versions: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def stages(self, version_id: str) -> tuple[str, ...] | None:
        return self.versions.get(version_id)

    @property
    def current_version(self) -> str | None:
        return next((v for v, stages in self.versions.items() if AWSCURRENT in stages), None)

    def is_current(self, version_id: str) -> bool:
        return AWSCURRENT in (self.versions.get(version_id) or ())

    def is_pending(self, version_id: str) -> bool:
        return AWSPENDING in (self.versions.get(version_id) or ())


class RotatableSecret(ABC):
    """The operations a rotation performs on its secret."""

    @abstractmethod
    def describe(self) -> SecretState: ...

    @abstractmethod
    def current_value(self) -> str | None:
        """The AWSCURRENT value (``None`` if the secret has no current value yet)."""

    @abstractmethod
    def pending_value(self, token: str) -> str | None:
        """The value of version ``token`` if it carries AWSPENDING and has a value; ``None`` otherwise."""

    @abstractmethod
    def put_pending(self, token: str, value: str) -> None:
        """Store ``value`` as version ``token`` with stage AWSPENDING."""

    @abstractmethod
    def promote(self, token: str) -> bool:
        """Move AWSCURRENT to version ``token``; ``False`` if it was there already (nothing done)."""

    @abstractmethod
    def abandon(self, token: str) -> None:
        """Take AWSPENDING off version ``token`` (so the next rotation starts afresh); no-op if it is not there."""


# ---------------------------------------------------------------------------------------------------------------
# Secrets Manager.


class SecretsManagerSecret(RotatableSecret):
    def __init__(self, secret_id: str, client: Any = None) -> None:
        if not secret_id:
            raise ValueError("the secret id (name or ARN) must not be empty")
        self.secret_id = secret_id
        self._client = client

    def __repr__(self) -> str:
        return f"SecretsManagerSecret({self.secret_id!r})"

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = secretsmanager_client(self.secret_id)
        return self._client

    def describe(self) -> SecretState:
        response = self._call("DescribeSecret", self.client.describe_secret, SecretId=self.secret_id)
        versions = {v: tuple(stages) for v, stages in (response.get("VersionIdsToStages") or {}).items()}
        return SecretState(rotation_enabled=bool(response.get("RotationEnabled")), versions=versions)

    def current_value(self) -> str | None:
        return self._get(VersionStage=AWSCURRENT)

    def pending_value(self, token: str) -> str | None:
        return self._get(VersionId=token, VersionStage=AWSPENDING)

    def put_pending(self, token: str, value: str) -> None:
        self._call(
            "PutSecretValue",
            self.client.put_secret_value,
            SecretId=self.secret_id,
            ClientRequestToken=token,
            SecretString=value,
            VersionStages=[AWSPENDING],
        )

    def promote(self, token: str) -> bool:
        current = self.describe().current_version
        if current == token:
            return False
        request: dict[str, Any] = {"SecretId": self.secret_id, "VersionStage": AWSCURRENT, "MoveToVersionId": token}
        if current is not None:
            request["RemoveFromVersionId"] = current
        self._call("UpdateSecretVersionStage", self.client.update_secret_version_stage, **request)
        return True

    def abandon(self, token: str) -> None:
        if not self.describe().is_pending(token):
            return
        self._call(
            "UpdateSecretVersionStage",
            self.client.update_secret_version_stage,
            SecretId=self.secret_id,
            VersionStage=AWSPENDING,
            RemoveFromVersionId=token,
        )

    def _get(self, **selector: str) -> str | None:
        try:
            response = self.client.get_secret_value(SecretId=self.secret_id, **selector)
        except ClientError as exc:
            code = _code(exc)
            if code == "ResourceNotFoundException" and not _secret_missing(exc):
                return None  # the secret exists, the version (or its value) does not
            message = str(exc.response.get("Error", {}).get("Message", ""))
            if code == "InvalidRequestException" and "VersionId" in selector and "VersionStage" in message:
                return None  # the version exists but does not carry the stage
            raise self._error("GetSecretValue", exc) from None
        except Exception as exc:  # BotoCoreError and friends: network, credentials
            raise self._error("GetSecretValue", exc) from None
        text = response.get("SecretString")
        return text if isinstance(text, str) else None

    def _call(self, operation: str, method: Any, **request: Any) -> Any:
        try:
            return method(**request)
        except Exception as exc:
            raise self._error(operation, exc) from None

    def _error(self, operation: str, exc: Exception) -> SecretError:
        if isinstance(exc, ClientError):
            detail = f"{_code(exc)}: {exc.response.get('Error', {}).get('Message', '') or '(no message)'}"
            kind = SecretNotFound if _code(exc) == "ResourceNotFoundException" else SecretError
        else:
            detail, kind = f"{type(exc).__name__}: {exc}", SecretError
        return kind(f"{operation} on secret {self.secret_id!r} failed: {detail}")


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _secret_missing(exc: Any) -> bool:
    """ResourceNotFoundException for the secret itself, as opposed to one of its versions."""
    message = str(exc.response.get("Error", {}).get("Message", "")).lower()
    return "can't find the specified secret." in message or "secret not found" in message


# ---------------------------------------------------------------------------------------------------------------
# The local twin.


class LocalSecretFile(RotatableSecret):
    """A signing secret in a local file (the AWSCURRENT value) plus ``<file>.pending.json`` (the AWSPENDING one).

    Version ids: the pending version's id is its token; the current version's id is a hash of the file's content,
    or the token it was promoted under while the sidecar (being removed) still names it.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.pending_path = self.path.with_name(self.path.name + ".pending.json")

    def __repr__(self) -> str:
        return f"LocalSecretFile({str(self.path)!r})"

    def describe(self) -> SecretState:
        current = self.current_value()
        sidecar = self._sidecar()
        versions: dict[str, tuple[str, ...]] = {}
        if sidecar is not None and current is not None and sidecar["value"] == current:
            versions[sidecar["token"]] = (AWSCURRENT, AWSPENDING)  # promoted; the sidecar is on its way out
            return SecretState(rotation_enabled=True, versions=versions)
        if current is not None:
            versions["local-" + hashlib.sha256(current.encode("utf-8")).hexdigest()[:16]] = (AWSCURRENT,)
        if sidecar is not None:
            versions[sidecar["token"]] = (AWSPENDING,)
        return SecretState(rotation_enabled=True, versions=versions)

    def current_value(self) -> str | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise SecretError(f"cannot read secret file {self.path}: {_why(exc)}") from None
        return text if text.strip() else None

    def pending_value(self, token: str) -> str | None:
        sidecar = self._sidecar()
        if sidecar is None or sidecar["token"] != token:
            return None
        return str(sidecar["value"])

    def pending_token(self) -> str | None:
        """The token of an unfinished rotation, if there is one (the CLI resumes it)."""
        sidecar = self._sidecar()
        return None if sidecar is None else str(sidecar["token"])

    def put_pending(self, token: str, value: str) -> None:
        sidecar = self._sidecar()
        if sidecar is not None and sidecar["token"] != token:
            raise SecretError(
                f"{self.pending_path} holds an unfinished rotation (token {sidecar['token']!r}); finish or abandon it first"
            )
        if sidecar is not None and sidecar["value"] != value:
            raise SecretError(f"version {token!r} of {self.path} already has a different value")
        self._write(self.pending_path, json.dumps({"token": token, "value": value}) + "\n")

    def promote(self, token: str) -> bool:
        sidecar = self._sidecar()
        if sidecar is None or sidecar["token"] != token:
            raise SecretError(f"{self.path} has no pending version {token!r} to promote")
        if self.current_value() == sidecar["value"]:
            self._remove_sidecar()
            return False
        self._write(self.path, sidecar["value"] if sidecar["value"].endswith("\n") else sidecar["value"] + "\n")
        self._remove_sidecar()
        return True

    def abandon(self, token: str) -> None:
        sidecar = self._sidecar()
        if sidecar is not None and sidecar["token"] == token:
            self._remove_sidecar()

    # -- files -----------------------------------------------------------------------------------------------

    def _sidecar(self) -> dict[str, str] | None:
        try:
            raw = self.pending_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise SecretError(f"cannot read {self.pending_path}: {_why(exc)}") from None
        try:
            doc = json.loads(raw)
        except json.JSONDecodeError:
            doc = None
        if not (isinstance(doc, dict) and isinstance(doc.get("token"), str) and isinstance(doc.get("value"), str)):
            raise SecretError(f'{self.pending_path} is not {{"token": "...", "value": "..."}}; remove it by hand')
        return {"token": doc["token"], "value": doc["value"]}

    def _remove_sidecar(self) -> None:
        try:
            self.pending_path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise SecretError(f"cannot remove {self.pending_path}: {_why(exc)}") from None

    @staticmethod
    def _write(path: Path, text: str) -> None:
        """Atomic replace (mode 0600 for a new file: it holds signing keys)."""
        try:
            replace_file(path, text.encode("utf-8"))
        except OSError as exc:
            raise SecretError(f"cannot write {path}: {_why(exc)}") from None


def _why(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or type(exc).__name__
