"""CloudFront real-time log fields: names, canonical order, SQL columns and types.

CloudFront writes the fields a real-time log configuration selects as one tab-separated line per request, always in
the canonical order below (the order of the "Real-time log configuration fields" list in the CloudFront Developer
Guide), whatever order the configuration listed them in. An empty value is written as ``-``.

Each field has a SQL column name (``cs-uri-stem`` -> ``cs_uri_stem``), a DuckDB type and the matching Athena/Glue
(Hive DDL) type. Numeric types are chosen only where CloudFront documents a number; everything whose format is not
pinned down (CMCD flags and tokens, header blobs, ports written by proxies...) stays VARCHAR so that a real log line
is never rejected because of a type guess.

Public names (stable): ``Field``, ``ALL_FIELDS``, ``FIELDS_BY_NAME``, ``FIELDS_BY_COLUMN``, ``DETECTION_FIELDS``,
``SchemaError``, ``parse_fields``, ``column_name``, ``duckdb_columns``, ``athena_columns``, ``fields_text``.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ALL_FIELDS",
    "DETECTION_FIELDS",
    "FIELDS_BY_COLUMN",
    "FIELDS_BY_NAME",
    "MAX_LINE_BYTES",
    "NUMBER_SPACE",
    "Field",
    "SchemaError",
    "athena_columns",
    "column_name",
    "duckdb_columns",
    "fields_text",
    "parse_fields",
]


class SchemaError(ValueError):
    """A field list that CloudFront could not have produced (unknown name, wrong order, duplicate, empty)."""


#: Longest log line accepted (bytes, without the line break), by the local reader and the Firehose transformation.
#: CloudFront caps URLs at 8 KB and truncates header fields to 800 bytes, so a real record with every field stays
#: well below this; anything longer is not a CloudFront record.
MAX_LINE_BYTES = 64 * 1024
#: What DuckDB's numeric casts trim around a number (the Firehose transformation trims the same).
NUMBER_SPACE = " \t\n\v\f\r"

_ATHENA = {"VARCHAR": "string", "DOUBLE": "double", "BIGINT": "bigint", "INTEGER": "int"}


@dataclass(frozen=True, slots=True)
class Field:
    """One real-time log field."""

    name: str  # CloudFront's name, e.g. "cs-uri-stem"
    position: int  # 1-based index in CloudFront's canonical order
    sql_type: str  # DuckDB type: VARCHAR, DOUBLE, BIGINT or INTEGER
    description: str

    @property
    def column(self) -> str:
        """SQL column name (snake_case)."""
        return column_name(self.name)

    @property
    def athena_type(self) -> str:
        """Glue/Athena (Hive DDL) type for the same column."""
        return _ATHENA[self.sql_type]

    @property
    def is_numeric(self) -> bool:
        return self.sql_type != "VARCHAR"


def column_name(field_name: str) -> str:
    """``cs-uri-stem`` -> ``cs_uri_stem``."""
    return field_name.replace("-", "_")


# (name, DuckDB type, description), in CloudFront's canonical order.
_CANONICAL: tuple[tuple[str, str, str], ...] = (
    ("timestamp", "DOUBLE", "When the edge server finished responding, epoch seconds with millisecond precision."),
    ("c-ip", "VARCHAR", "Viewer IP address (IPv4 or IPv6); a proxy's or load balancer's when the viewer used one."),
    ("s-ip", "VARCHAR", "IP address of the CloudFront server that served the request."),
    ("time-to-first-byte", "DOUBLE", "Seconds between receiving the request and writing the first response byte."),
    ("sc-status", "INTEGER", "HTTP status code of the response (000 when the viewer closed the connection early)."),
    ("sc-bytes", "BIGINT", "Bytes the server sent to the viewer for this request, headers included."),
    ("cs-method", "VARCHAR", "HTTP request method."),
    ("cs-protocol", "VARCHAR", "Protocol of the viewer request: http, https, ws, wss or grpcs."),
    ("cs-host", "VARCHAR", "Value of the viewer request's Host header (the distribution or alternate domain name)."),
    ("cs-uri-stem", "VARCHAR", "Request URL path without the query string (here: /<sid>.<jwt>/<asset path>)."),
    ("cs-bytes", "BIGINT", "Bytes of the viewer request, headers included."),
    ("x-edge-location", "VARCHAR", "Edge location that served the request (airport code and number, e.g. FRA56-P1)."),
    ("x-edge-request-id", "VARCHAR", "Opaque string that uniquely identifies the request."),
    ("x-host-header", "VARCHAR", "Host header as the viewer sent it (domain name of the distribution or CNAME)."),
    ("time-taken", "DOUBLE", "Seconds between receiving the request and writing the last response byte."),
    ("cs-protocol-version", "VARCHAR", "HTTP version of the viewer request, e.g. HTTP/2.0."),
    ("c-ip-version", "VARCHAR", "IP version of the viewer address: IPv4 or IPv6."),
    ("cs-user-agent", "VARCHAR", "User-Agent header of the request, URL-encoded as CloudFront writes it."),
    ("cs-referer", "VARCHAR", "Referer header of the request."),
    ("cs-cookie", "VARCHAR", "Cookie header of the request (name-value pairs)."),
    ("cs-uri-query", "VARCHAR", "Query string of the request URL, if any."),
    ("x-edge-response-result-type", "VARCHAR", "Result type when the response was ready (Hit, Miss, Error...)."),
    ("x-forwarded-for", "VARCHAR", "Originating viewer IP when the viewer came through a proxy or load balancer."),
    ("ssl-protocol", "VARCHAR", "TLS protocol negotiated for HTTPS requests."),
    ("ssl-cipher", "VARCHAR", "TLS cipher negotiated for HTTPS requests."),
    ("x-edge-result-type", "VARCHAR", "Result type after the last byte left the edge (Hit, RefreshHit, Miss, Error...)."),
    ("fle-encrypted-fields", "VARCHAR", "Number of field-level-encryption fields encrypted and forwarded."),
    ("fle-status", "VARCHAR", "Field-level encryption outcome code for the request body."),
    ("sc-content-type", "VARCHAR", "Content-Type header of the response."),
    ("sc-content-len", "BIGINT", "Content-Length header of the response."),
    ("sc-range-start", "BIGINT", "Range start of the response's Content-Range header (range requests, 206)."),
    ("sc-range-end", "BIGINT", "Range end of the response's Content-Range header (range requests, 206)."),
    ("c-port", "INTEGER", "Viewer's source port."),
    ("x-edge-detailed-result-type", "VARCHAR", "Same as x-edge-result-type, or the specific error type on errors."),
    ("c-country", "VARCHAR", "ISO 3166 country code of the viewer, as determined from its IP address."),
    ("cs-accept-encoding", "VARCHAR", "Accept-Encoding header of the request."),
    ("cs-accept", "VARCHAR", "Accept header of the request."),
    ("cache-behavior-path-pattern", "VARCHAR", "Path pattern of the cache behavior that matched the request."),
    ("cs-headers", "VARCHAR", "Request headers, names and values, URL-encoded (truncated to 800 bytes)."),
    ("cs-header-names", "VARCHAR", "Request header names only, URL-encoded (truncated to 800 bytes)."),
    ("cs-headers-count", "INTEGER", "Number of headers in the request."),
    ("primary-distribution-id", "VARCHAR", "Primary distribution ID when continuous deployment served the request."),
    ("primary-distribution-dns-name", "VARCHAR", "Primary distribution domain name under continuous deployment."),
    ("origin-fbl", "DOUBLE", "Origin first-byte latency in seconds (cache misses)."),
    ("origin-lbl", "DOUBLE", "Origin last-byte latency in seconds (cache misses)."),
    ("asn", "BIGINT", "Autonomous system number of the viewer's IP address."),
    ("cmcd-encoded-bitrate", "BIGINT", "CMCD br: encoded bitrate of the requested object, kbps."),
    ("cmcd-buffer-length", "BIGINT", "CMCD bl: player buffer length, milliseconds."),
    ("cmcd-buffer-starvation", "VARCHAR", "CMCD bs: the buffer ran empty since the previous request."),
    ("cmcd-content-id", "VARCHAR", "CMCD cid: content identifier."),
    ("cmcd-object-duration", "BIGINT", "CMCD d: playback duration of the requested object, milliseconds."),
    ("cmcd-deadline", "BIGINT", "CMCD dl: deadline from the request before the buffer runs out, milliseconds."),
    ("cmcd-measured-throughput", "BIGINT", "CMCD mtp: throughput the player measured, kbps."),
    ("cmcd-next-object-request", "VARCHAR", "CMCD nor: relative path of the next object the player will request."),
    ("cmcd-next-range-request", "VARCHAR", "CMCD nrr: byte range of the next request."),
    ("cmcd-object-type", "VARCHAR", "CMCD ot: object type (m manifest, a audio, v video, av muxed, i init, ...)."),
    ("cmcd-playback-rate", "DOUBLE", "CMCD pr: playback rate (1 is real time)."),
    ("cmcd-requested-maximum-throughput", "BIGINT", "CMCD rtp: maximum throughput the player requests, kbps."),
    ("cmcd-streaming-format", "VARCHAR", "CMCD sf: streaming format (h HLS, d DASH, s Smooth, o other)."),
    ("cmcd-session-id", "VARCHAR", "CMCD sid: the player's playback session id."),
    ("cmcd-stream-type", "VARCHAR", "CMCD st: stream type (v VOD, l live)."),
    ("cmcd-startup", "VARCHAR", "CMCD su: the object is needed urgently for startup or seeking."),
    ("cmcd-top-bitrate", "BIGINT", "CMCD tb: highest bitrate rendition the player may play, kbps."),
    ("cmcd-version", "BIGINT", "CMCD v: CMCD version."),
    ("r-host", "VARCHAR", "Origin host CloudFront sent the request to (origin failover / routing)."),
    ("sr-reason", "VARCHAR", "Why the request was routed to the origin it went to (e.g. origin failover)."),
    ("x-edge-mqcs", "VARCHAR", "Media quality confidence score of the served segment (media quality-aware resiliency)."),
    ("distribution-tenant-id", "VARCHAR", "ID of the distribution tenant (multi-tenant distributions)."),
    ("connection-id", "VARCHAR", "Unique identifier of the viewer's TLS connection (matches connection logs)."),
    ("viewer-request-log-data", "VARCHAR", "Custom data a viewer-request CloudFront Function logged (cf.logCustomData)."),
    ("viewer-response-log-data", "VARCHAR", "Custom data a viewer-response CloudFront Function logged."),
)

ALL_FIELDS: tuple[Field, ...] = tuple(
    Field(name=name, position=index, sql_type=sql_type, description=description)
    for index, (name, sql_type, description) in enumerate(_CANONICAL, start=1)
)
FIELDS_BY_NAME: dict[str, Field] = {f.name: f for f in ALL_FIELDS}
FIELDS_BY_COLUMN: dict[str, Field] = {f.column: f for f in ALL_FIELDS}

# What our real-time log configuration requests and the detection reads, in canonical order. Identity and place
# (c-ip, c-ip-version, asn, c-country, x-edge-location), what was fetched and when (timestamp, cs-uri-stem, cs-method,
# cs-host, sc-status, sc-bytes, range, time-to-first-byte, time-taken), who fetched it (cs-user-agent, cs-referer),
# x-edge-request-id to drop the duplicates Kinesis/Firehose may deliver (at-least-once), x-edge-result-type for
# cache context, and the Common Media Client Data (CTA-5004) a player may send: its playback session id (several at
# once on one token is evidence of several players that survives CGNAT), the content, its buffer and throughput.
# Players that send no CMCD leave those fields "-": detection treats them as absent, never as evidence.
DETECTION_FIELDS: tuple[Field, ...] = tuple(
    FIELDS_BY_NAME[name]
    for name in (
        "timestamp",
        "c-ip",
        "time-to-first-byte",
        "sc-status",
        "sc-bytes",
        "cs-method",
        "cs-host",
        "cs-uri-stem",
        "x-edge-location",
        "x-edge-request-id",
        "time-taken",
        "c-ip-version",
        "cs-user-agent",
        "cs-referer",
        "x-edge-result-type",
        "sc-range-start",
        "sc-range-end",
        "c-country",
        "asn",
        "cmcd-buffer-length",
        "cmcd-content-id",
        "cmcd-measured-throughput",
        "cmcd-playback-rate",
        "cmcd-session-id",
    )
)


def _close_matches(word: str) -> list[str]:
    candidates = list(FIELDS_BY_NAME) + list(FIELDS_BY_COLUMN)
    matches = difflib.get_close_matches(word, candidates, n=3, cutoff=0.6)
    # Report CloudFront names, not column names; keep order, drop duplicates.
    names = [FIELDS_BY_COLUMN[m].name if m in FIELDS_BY_COLUMN else m for m in matches]
    return list(dict.fromkeys(names))


def _split(text: str) -> list[str]:
    tokens: list[str] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        for token in line.replace("\t", ",").replace(" ", ",").split(","):
            token = token.strip().strip("\"'")
            if token:
                tokens.append(token)
    return tokens


def parse_fields(spec: str | os.PathLike[str] | Iterable[str | Field]) -> list[Field]:
    """Resolve a real-time log field list to ``Field`` objects, in the order given.

    ``spec`` is a comma-separated string (``"timestamp,c-ip,sc-status"``), the text of a ``fields.txt`` (one name
    per line or comma separated; ``#`` comments and blank lines ignored), a path to such a file (a ``Path``, or a
    string naming an existing file), or a sequence of names or ``Field`` objects. CloudFront names
    (``cs-uri-stem``) and column names (``cs_uri_stem``) are both accepted.

    Raises ``SchemaError`` for an empty list, an unknown name (with close matches), a duplicate, or an order that is
    not CloudFront's canonical order (CloudFront always writes canonical order, so such a list cannot describe a
    real log and would silently mislabel columns).
    """
    if isinstance(spec, os.PathLike):
        spec = Path(spec).read_text(encoding="utf-8")
    elif isinstance(spec, str) and "," not in spec and "\n" not in spec and spec.strip() not in FIELDS_BY_NAME:
        candidate = Path(spec.strip())
        if spec.strip() and candidate.is_file():
            spec = candidate.read_text(encoding="utf-8")
    if isinstance(spec, str):
        tokens: list[str | Field] = list(_split(spec))
    else:
        tokens = [t.strip() if isinstance(t, str) else t for t in spec]

    if not tokens:
        raise SchemaError("empty field list: give at least one CloudFront real-time log field, e.g. timestamp,c-ip")

    fields: list[Field] = []
    unknown: list[str] = []
    for token in tokens:
        if isinstance(token, Field):
            fields.append(FIELDS_BY_NAME[token.name])
            continue
        found = FIELDS_BY_NAME.get(token) or FIELDS_BY_COLUMN.get(token) or FIELDS_BY_NAME.get(token.lower())
        if found is None:
            unknown.append(token)
        else:
            fields.append(found)
    if unknown:
        parts = []
        for word in unknown:
            close = _close_matches(word) or _close_matches(word.lower())
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            parts.append(f"{word!r}{hint}")
        raise SchemaError(
            f"unknown real-time log field{'s' if len(unknown) > 1 else ''}: {'; '.join(parts)}. "
            f"Known fields: {', '.join(FIELDS_BY_NAME)}"
        )

    seen: set[str] = set()
    for f in fields:
        if f.name in seen:
            raise SchemaError(f"field {f.name!r} is listed twice")
        seen.add(f.name)

    for before, after in zip(fields, fields[1:]):
        if after.position < before.position:
            canonical = ",".join(f.name for f in sorted(fields, key=lambda f: f.position))
            raise SchemaError(
                f"fields are not in CloudFront's canonical order ({after.name!r} comes before {before.name!r} in "
                f"every real-time log record). CloudFront writes fields in canonical order whatever order the "
                f"configuration lists them in; the records therefore read as: {canonical}"
            )
    return fields


def duckdb_columns(fields: Sequence[Field]) -> dict[str, str]:
    """``{column: duckdb_type}`` in the given order (the ``columns=`` argument of DuckDB's read_csv)."""
    return {f.column: f.sql_type for f in fields}


def athena_columns(fields: Sequence[Field]) -> list[tuple[str, str]]:
    """``[(column, athena_type), ...]`` for a Glue table / Athena DDL over the same records."""
    return [(f.column, f.athena_type) for f in fields]


def fields_text(fields: Sequence[Field]) -> str:
    """The ``fields.txt`` text for a field list: one CloudFront name per line."""
    return "".join(f"{f.name}\n" for f in fields)
