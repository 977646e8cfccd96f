"""Where a workflow run keeps its files: the per-session table Athena unloads, and the verdict pages between states.

One small interface, two implementations: :class:`S3RunFiles` (boto3; what the Lambdas use) and
:class:`LocalRunFiles` (a folder; the local twin). Locations are URIs: ``s3://bucket/key`` or a local path.
Step Functions passes only these locations between states (a state's payload is limited to 256 KB), never the
data itself.
"""

from __future__ import annotations

import io
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from botocore.exceptions import ClientError

from core import aws
from core.files import replace_file

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["LocalRunFiles", "RunFiles", "RunFilesError", "S3RunFiles", "open_run_files"]

#: Files an UNLOAD writes besides its data (Athena's manifest and metadata go to the results location, but be safe).
_NOT_DATA = (".csv", ".metadata", ".txt", ".json", "_SUCCESS", "/")


class RunFilesError(Exception):
    """A run file is missing or unreadable."""


class RunFiles(ABC):
    """The files of workflow runs, addressed by URI."""

    @abstractmethod
    def put_bytes(self, uri: str, data: bytes) -> None: ...

    @abstractmethod
    def get_bytes(self, uri: str) -> bytes: ...

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Every file URI under ``prefix`` (a folder URI ending in ``/``), sorted."""

    def put_json(self, uri: str, document: Any) -> None:
        self.put_bytes(uri, json.dumps(document, separators=(",", ":"), allow_nan=False).encode("utf-8"))

    def get_json(self, uri: str) -> Any:
        try:
            return json.loads(self.get_bytes(uri))
        except ValueError as exc:
            raise RunFilesError(f"{uri} is not JSON: {exc}") from exc

    def read_table(self, prefix: str) -> pa.Table | None:
        """The Parquet files under ``prefix`` as one table (``None`` when there is none: an empty result).

        The files of one UNLOAD share a schema; they are read one at a time (the table is one row per session)."""
        import pyarrow as pa  # only the score step reads tables: the other functions start without pyarrow
        import pyarrow.parquet as pq

        tables = []
        for uri in self.list(prefix):
            if uri.endswith(_NOT_DATA):
                continue
            try:
                tables.append(pq.read_table(io.BytesIO(self.get_bytes(uri))))
            except (pa.ArrowInvalid, OSError) as exc:
                raise RunFilesError(f"{uri} is not a Parquet file: {exc}") from exc
        if not tables:
            return None
        return pa.concat_tables(tables, promote_options="permissive")


class S3RunFiles(RunFiles):
    """Run files in S3 (``s3://bucket/key``)."""

    def __init__(self, client: Any = None) -> None:
        self._s3 = client if client is not None else aws.client("s3")

    @staticmethod
    def _split(uri: str) -> tuple[str, str]:
        parts = urlsplit(uri)
        if parts.scheme != "s3" or not parts.netloc:
            raise RunFilesError(f"{uri!r} is not an s3://bucket/key URI")
        return parts.netloc, parts.path.lstrip("/")

    def put_bytes(self, uri: str, data: bytes) -> None:
        bucket, key = self._split(uri)
        self._s3.put_object(Bucket=bucket, Key=key, Body=data)

    def get_bytes(self, uri: str) -> bytes:
        bucket, key = self._split(uri)
        try:
            return self._s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as exc:
            raise RunFilesError(f"cannot read {uri}: {exc}") from exc

    def list(self, prefix: str) -> list[str]:
        bucket, key = self._split(prefix)
        found = []
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
            found.extend(f"s3://{bucket}/{item['Key']}" for item in page.get("Contents", ()))
        return sorted(found)


class LocalRunFiles(RunFiles):
    """Run files in a local folder (plain paths or ``file://`` URIs)."""

    @staticmethod
    def _path(uri: str) -> Path:
        return Path(urlsplit(uri).path if uri.startswith("file://") else uri)

    def put_bytes(self, uri: str, data: bytes) -> None:
        path = self._path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_file(path, data, new_file_mode=0o644)

    def get_bytes(self, uri: str) -> bytes:
        try:
            return self._path(uri).read_bytes()
        except OSError as exc:
            raise RunFilesError(f"cannot read {uri}: {exc}") from exc

    def list(self, prefix: str) -> list[str]:
        root = self._path(prefix)
        if not root.is_dir():
            return []
        return sorted(str(p) for p in root.rglob("*") if p.is_file() and not p.name.endswith(".partial"))


def open_run_files(uri: str, *, client: Any = None) -> RunFiles:
    """The run files implementation for ``uri``: S3 for ``s3://``, a local folder otherwise."""
    if uri.startswith("s3://"):
        return S3RunFiles(client)
    if "://" in uri and not uri.startswith("file://"):
        raise RunFilesError(f"run files must be s3://bucket/prefix/ or a local folder, not {uri!r}")
    return LocalRunFiles()
