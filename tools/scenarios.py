"""Hand-built log scenarios for tests, and the one TSV formatter the corpus generator shares.

Build requests as dicts keyed by SQL column name (``timestamp``, ``c_ip``, ``cs_uri_stem``, ``asn``...), or let
``playback`` produce what one HLS player does, then turn them into real-time log lines in the input contract::

    sid = "sessionAAAAAAAAAAAA01"
    home = Viewer("198.51.100.7", asn=3320, country="DE")
    flat = Viewer("203.0.113.9", asn=12322, country="FR")
    reqs = playback(sid, home, start=T0, duration=300) + playback(sid, flat, start=T0 + 20, duration=300)
    write_firehose(tmp_path / "logs", reqs)          # YYYY/MM/DD/HH/*.gz + fields.txt, ready for open_logs
    lines = records(reqs)                            # or just the TSV lines

Missing columns get plausible defaults (``complete``): request id, edge location from the country, IP version,
bytes and timings from the object, result type. ``cs_user_agent`` is given as plain text and written URL-encoded
as CloudFront does (text that is already encoded is left alone). Values are written exactly as CloudFront would:
``-`` for empty, timestamps and durations with millisecond precision.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import os
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from detection.logs.schema import DETECTION_FIELDS, Field, fields_text, parse_fields

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_USER_AGENT",
    "RENDITIONS",
    "Viewer",
    "asset_uri",
    "complete",
    "encode_user_agent",
    "firehose_key",
    "playback",
    "records",
    "request",
    "session_token",
    "tsv_lines",
    "write_firehose",
    "write_log",
]

DEFAULT_HOST = "d3kx7q2example.cloudfront.net"
DEFAULT_USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)
#: The key the generated tokens are signed with (``session_token``'s defaults; the demo publishes it to its store).
DEFAULT_KID = "gen-2026a"
DEFAULT_KEY = hashlib.sha256(b"cf-media-shield synthetic corpus signing key").digest()

#: ABR ladder: rendition name -> video bitrate in kbit/s.
RENDITIONS: dict[str, int] = {"1080p": 6000, "720p": 3500, "540p": 2000, "360p": 900, "240p": 400}

#: Edge locations by viewer country (CloudFront POP codes); "*" for anywhere else.
EDGES: dict[str, tuple[str, ...]] = {
    "DE": ("FRA56-P1", "FRA60-P3", "MUC50-P1", "HAM50-C1", "DUS51-C1", "TXL50-P2"),
    "US": ("IAD89-C3", "JFK52-P4", "ORD58-P6", "LAX50-C2", "DFW56-P2", "SEA19-C1", "ATL56-C3"),
    "GB": ("LHR61-P2", "LHR50-C1", "MAN50-C2"),
    "FR": ("CDG55-P3", "CDG52-C1", "MRS52-C2"),
    "ES": ("MAD53-C3", "BCN50-P1"),
    "IT": ("MXP63-P1", "FCO50-C1"),
    "NL": ("AMS58-P4", "AMS1-C1"),
    "PL": ("WAW51-P3",),
    "AT": ("VIE50-C1",),
    "CH": ("ZRH55-P1",),
    "BR": ("GRU3-C1", "GIG51-C1"),
    "MX": ("QRO51-C1", "MEX52-P1"),
    "CA": ("YTO50-C2", "YUL62-C1"),
    "JP": ("NRT57-P2", "KIX56-C1"),
    "IN": ("BOM78-P4", "DEL54-C2"),
    "SG": ("SIN2-P7",),
    "TR": ("IST51-P1",),
    "VN": ("HAN50-C1",),
    "ID": ("CGK51-P1",),
    "AU": ("SYD62-P2",),
    "*": ("FRA56-P1", "IAD89-C3", "SIN2-P7"),
}

_SID_RE = re.compile(r"^[A-Za-z0-9_-]{16,32}\Z")
_UA_UNSAFE = re.compile(r"[^\x21-\x7e]|[\"\\%](?![0-9A-Fa-f]{2})")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def session_token(
    session_id: str,
    *,
    iat: int,
    exp: int,
    kid: str = DEFAULT_KID,
    key: bytes = DEFAULT_KEY,
    paths: Sequence[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """A compact HS256 JWT in the token contract: header with ``kid``; payload ``sid``, ``iat``, ``exp`` (and
    ``paths``, ``extra`` claims). Signed with a fixed synthetic key unless ``key`` is given."""
    if not _SID_RE.match(session_id):
        raise ValueError(f"session id {session_id!r} must be 16-32 characters of [A-Za-z0-9_-]")
    header = {"alg": "HS256", "kid": kid, "typ": "JWT"}
    claims: dict[str, Any] = {"sid": session_id, "iat": int(iat), "exp": int(exp)}
    if paths:
        claims["paths"] = list(paths)
    if extra:
        claims.update(extra)
    signing_input = (
        _b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + _b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    signature = hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(signature)}"


def asset_uri(session_id: str, token: str, asset_path: str) -> str:
    """``/<session_id>.<jwt>/<asset path>`` (the URL and token contract)."""
    return f"/{session_id}.{token}/{asset_path.lstrip('/')}"


def encode_user_agent(user_agent: str) -> str:
    """URL-encode a user agent the way CloudFront logs it (spaces as %20; text already encoded stays as is)."""

    def quote(match: re.Match[str]) -> str:
        return "".join(f"%{b:02X}" for b in match.group(0).encode("utf-8"))

    return _UA_UNSAFE.sub(quote, user_agent)


@dataclass(frozen=True)
class Viewer:
    """Where a player sits: its address, network and user agent (plain text)."""

    ip: str
    asn: int = 3320
    country: str = "DE"
    user_agent: str = DEFAULT_USER_AGENT
    edge: str | None = None  # default: the first edge location of the country


def _edge_for(country: str | None, ip: str) -> str:
    options = EDGES.get(country or "*", EDGES["*"])
    return options[zlib.crc32(ip.encode()) % len(options)]


def request(
    session_id: str,
    asset_path: str,
    *,
    timestamp: float,
    viewer: Viewer,
    token: str | None = None,
    **columns: Any,
) -> dict[str, Any]:
    """One request record of ``viewer`` for ``asset_path`` in session ``session_id``; ``columns`` override or add
    any column (``sc_status=403``, ``sc_bytes=...``). Without ``token`` a token valid for 4 hours is made."""
    if token is None:
        token = session_token(session_id, iat=int(timestamp) - 60, exp=int(timestamp) + 4 * 3600)
    record: dict[str, Any] = {
        "timestamp": float(timestamp),
        "c_ip": viewer.ip,
        "cs_uri_stem": asset_uri(session_id, token, asset_path),
        "cs_user_agent": viewer.user_agent,
        "c_country": viewer.country,
        "asn": viewer.asn,
        "x_edge_location": viewer.edge or _edge_for(viewer.country, viewer.ip),
    }
    record.update(columns)
    return record


def playback(
    session_id: str,
    viewer: Viewer,
    *,
    start: float,
    duration: float,
    channel: str = "ch01-news",
    rendition: str = "720p",
    segment_seconds: float = 4.0,
    live: bool = True,
    speed: float = 1.0,
    renditions: Sequence[str] | None = None,
    master: bool = True,
    token: str | None = None,
    first_segment: int | None = None,
    **columns: Any,
) -> list[dict[str, Any]]:
    """The requests one HLS player makes: master and variant playlist at ``start``, then one segment every
    ``segment_seconds / speed`` (``speed`` > 1: faster than real time) and, for live, a variant playlist refresh
    before each segment. ``renditions`` given: every segment is fetched in each of them (a restreamer's pattern).
    Live segment numbers follow the wall clock (every viewer of a channel fetches the same numbers at the same
    time); VOD numbers start at 0 (or ``first_segment``). ``columns`` are added to every request."""
    if token is None:
        token = session_token(session_id, iat=int(start) - 60, exp=int(start) + 4 * 3600, paths=[f"/{channel}/"])
    ladder = list(renditions) if renditions else [rendition]
    out: list[dict[str, Any]] = []

    def add(t: float, path: str, **extra: Any) -> None:
        out.append(request(session_id, path, timestamp=t, viewer=viewer, token=token, **{**columns, **extra}))

    if master:
        add(start, f"{channel}/master.m3u8")
        for name in ladder:
            add(start + 0.05, f"{channel}/{name}/index.m3u8")
    step = segment_seconds / speed
    count = int(duration // step)
    if first_segment is None:
        first_segment = int(start // segment_seconds) if live else 0
    for k in range(count):
        t = start + 0.2 + k * step
        for name in ladder:
            if live:
                add(t, f"{channel}/{name}/index.m3u8")
            add(t + 0.05, f"{channel}/{name}/seg_{first_segment + k}.ts", _segment_seconds=segment_seconds)
    return out


# -- completing and formatting -------------------------------------------------------------------------------------


def _object_kind(uri: pa.Array) -> np.ndarray:
    """0 master playlist, 1 variant playlist, 2 segment, 3 other."""
    is_segment = pc.ends_with(uri, ".ts").to_numpy(zero_copy_only=False)
    is_master = pc.ends_with(uri, "master.m3u8").to_numpy(zero_copy_only=False)
    is_playlist = pc.ends_with(uri, ".m3u8").to_numpy(zero_copy_only=False)
    kind = np.full(len(uri), 3, dtype=np.int8)
    kind[is_playlist] = 1
    kind[is_master] = 0
    kind[is_segment] = 2
    return kind


def _rendition_kbps(uri: pa.Array) -> np.ndarray:
    kbps = np.full(len(uri), 2000, dtype=np.int64)
    for name, rate in RENDITIONS.items():
        kbps[pc.match_substring(uri, f"/{name}/").to_numpy(zero_copy_only=False)] = rate
    return kbps


def complete(requests: Iterable[dict[str, Any]] | Any, *, seed: int = 0) -> pa.Table:
    """Requests (dicts, a pandas DataFrame or an Arrow table, keyed by column name) as an Arrow table with every
    DETECTION_FIELDS column, defaults filled in where a column or value is missing. Deterministic given ``seed``."""
    if isinstance(requests, pa.Table):
        table = requests
    elif hasattr(requests, "to_dict") and hasattr(requests, "columns"):  # pandas
        table = pa.Table.from_pandas(requests, preserve_index=False)
    else:
        rows = list(requests)
        names: dict[str, None] = {}
        for row in rows:
            names.update(dict.fromkeys(row))
        table = pa.table({name: [row.get(name) for row in rows] for name in names})
    n = table.num_rows
    rng = np.random.default_rng(seed)

    def column(name: str) -> pa.ChunkedArray | None:
        return table[name] if name in table.column_names else None

    def fill(name: str, default: Any) -> None:
        nonlocal table
        values = pa.array(default) if not isinstance(default, (pa.Array, pa.ChunkedArray)) else default
        existing = column(name)
        if existing is None:
            table = table.append_column(name, values)
        else:
            if existing.type != values.type and pa.types.is_null(existing.type):
                existing = existing.cast(values.type)
            merged = pc.coalesce(existing, values.cast(existing.type)) if existing.null_count else existing
            table = table.set_column(table.column_names.index(name), name, merged)

    uri = column("cs_uri_stem")
    if uri is None:
        raise ValueError("every request needs cs_uri_stem (use asset_uri or request())")
    uri = uri.combine_chunks()
    kind = _object_kind(uri)
    seg_seconds = np.full(n, 4.0)
    if column("_segment_seconds") is not None:
        given = column("_segment_seconds").to_numpy(zero_copy_only=False).astype(float)
        seg_seconds = np.where(np.isnan(given), seg_seconds, given)
        table = table.drop_columns(["_segment_seconds"])
    status = (
        np.asarray(pc.fill_null(column("sc_status"), 200).to_numpy(zero_copy_only=False), dtype=np.int64)
        if column("sc_status") is not None
        else np.full(n, 200, dtype=np.int64)
    )
    body = np.where(
        kind == 2,
        _rendition_kbps(uri) * 1000 / 8 * seg_seconds * rng.uniform(0.85, 1.15, n),
        np.where(kind == 0, 900, 480),
    )
    body = np.where(status >= 400, 0, body)
    sc_bytes = (body + rng.integers(280, 520, n)).astype(np.int64)
    ttfb = np.round(np.where(status >= 400, rng.uniform(0.001, 0.004, n), rng.uniform(0.002, 0.06, n)), 3)
    fill("sc_bytes", pa.array(sc_bytes))
    sc_bytes = np.asarray(table["sc_bytes"].to_numpy(zero_copy_only=False), dtype=np.float64)
    throughput = rng.uniform(8e6, 60e6, n) / 8  # bytes/s
    fill("sc_status", pa.array(status.astype(np.int32)))
    fill("time_to_first_byte", pa.array(ttfb))
    fill("time_taken", pa.array(np.round(ttfb + sc_bytes / throughput, 3)))
    fill("cs_method", pa.array(["GET"] * n))
    fill("cs_host", pa.array([DEFAULT_HOST] * n))
    ips = table["c_ip"].to_pylist() if column("c_ip") is not None else ["192.0.2.1"] * n
    fill("c_ip", pa.array(ips))
    fill("c_ip_version", pa.array(["IPv6" if ip and ":" in ip else "IPv4" for ip in ips]))
    countries = table["c_country"].to_pylist() if column("c_country") is not None else [None] * n
    fill("x_edge_location", pa.array([_edge_for(c, ip or "") for c, ip in zip(countries, ips)]))
    fill("x_edge_request_id", pa.array(_request_ids(rng, n)))
    result = np.where(status >= 400, "Error", np.where(kind == 2, "Hit", "Miss"))
    fill("x_edge_result_type", pa.array(result.tolist()))
    fill("cs_user_agent", pa.array([DEFAULT_USER_AGENT] * n))
    for name, kind in (("cmcd_session_id", pa.string()), ("cmcd_content_id", pa.string()),
                       ("cmcd_playback_rate", pa.float64())):  # players that send no CMCD leave these empty
        if column(name) is None:
            table = table.append_column(name, pa.nulls(n, kind))
    if n:
        table = table.set_column(
            table.column_names.index("cs_user_agent"), "cs_user_agent", _encode_user_agents(table["cs_user_agent"])
        )
    return table


_REQUEST_ID_ALPHABET = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", dtype=np.uint8)


def _request_ids(rng: np.random.Generator, n: int) -> pa.Array:
    """``n`` x-edge-request-id values: 54 base64url characters and ``==`` (56 in all), as CloudFront writes them."""
    raw = _REQUEST_ID_ALPHABET[rng.integers(0, 64, size=(n, 56), dtype=np.uint8)]
    raw[:, 54:] = ord("=")
    data = pa.py_buffer(np.ascontiguousarray(raw).tobytes())
    offsets = pa.py_buffer((np.arange(n + 1, dtype=np.int32) * 56).tobytes())
    return pa.Array.from_buffers(pa.string(), n, [None, offsets, data])


def _encode_user_agents(values: pa.ChunkedArray | pa.Array) -> pa.Array:
    encoded = pc.dictionary_encode(values)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    dictionary = pa.array([encode_user_agent(v) for v in encoded.dictionary.to_pylist()], pa.string())
    return pc.take(dictionary, encoded.indices)


def _fixed3(values: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """Non-negative floats as text with exactly three decimals (``1767225600.123``, ``0.004``)."""
    ms = np.rint(np.asarray(values, dtype=np.float64) * 1000.0)
    ms = np.where(np.isfinite(ms), ms, 0).astype(np.int64)
    negative = ms < 0
    ms = np.abs(ms)
    whole = pa.array(ms // 1000).cast(pa.string())
    frac = pc.utf8_lpad(pa.array(ms % 1000).cast(pa.string()), 3, "0")
    text = pc.binary_join_element_wise(whole, frac, ".")
    if negative.any():
        text = pc.if_else(pa.array(negative), pc.binary_join_element_wise("-", text, ""), text)
    if valid is not None and not valid.all():
        text = pc.if_else(pa.array(valid), text, pa.scalar(None, pa.string()))
    return text


def _format_column(values: pa.Array | pa.ChunkedArray | None, f: Field, n: int, sanitize: bool) -> pa.Array:
    if values is None:
        return pa.array(["-"] * n, pa.string()) if n else pa.array([], pa.string())
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if f.sql_type == "DOUBLE" and (pa.types.is_floating(values.type) or pa.types.is_integer(values.type)):
        valid = np.asarray(values.is_valid().to_numpy(zero_copy_only=False))
        data = np.asarray(values.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.float64)
        text = _fixed3(data, valid)
    elif pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        text = values.cast(pa.string())
        if sanitize:
            for bad, good in (("\t", "%09"), ("\n", "%0A"), ("\r", "%0D")):
                text = pc.replace_substring(text, bad, good)
            text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
    elif pa.types.is_null(values.type):
        text = pa.nulls(len(values), pa.string())
    else:
        text = values.cast(pa.string())
    return pc.fill_null(text, "-")


def tsv_lines(table: pa.Table, fields: Sequence[Field] = DETECTION_FIELDS, *, sanitize: bool = True) -> pa.Array:
    """One real-time log line per row (without the newline), the given fields in order, values as CloudFront
    writes them. Columns the table lacks are written as ``-``."""
    n = table.num_rows
    columns = [
        _format_column(table[f.column] if f.column in table.column_names else None, f, n, sanitize) for f in fields
    ]
    if not n:
        return pa.array([], pa.string())
    if len(columns) == 1:
        return columns[0]
    return pc.binary_join_element_wise(*columns, "\t")


def records(
    requests: Iterable[dict[str, Any]] | Any,
    fields: str | Sequence[str | Field] = DETECTION_FIELDS,
    *,
    seed: int = 0,
) -> list[str]:
    """Requests (dicts, DataFrame or Arrow table) -> real-time log lines (no trailing newline), defaults filled."""
    parsed = parse_fields(fields)
    table = complete(requests, seed=seed)
    order = np.argsort(np.asarray(table["timestamp"].to_numpy(zero_copy_only=False), dtype=np.float64), kind="stable")
    return tsv_lines(table.take(pa.array(order)), parsed).to_pylist()


def write_log(
    path: str | os.PathLike[str],
    requests: Iterable[dict[str, Any]] | Any,
    fields: str | Sequence[str | Field] = DETECTION_FIELDS,
    *,
    seed: int = 0,
    compress: bool | None = None,
) -> Path:
    """Write requests as one log file (gzip when the name ends in .gz, or when ``compress``)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(line + "\n" for line in records(requests, fields, seed=seed)).encode("utf-8")
    if compress if compress is not None else target.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    target.write_bytes(data)
    return target


def firehose_key(arrival: float, stream: str = "cf-realtime-logs", version: int = 1, suffix: str = "") -> str:
    """The S3 key Firehose gives an object whose oldest record arrived at ``arrival``:
    ``YYYY/MM/DD/HH/<stream>-<version>-YYYY-MM-DD-HH-MM-SS-<uuid>.gz``."""
    import time as _time

    tm = _time.gmtime(int(arrival))
    folder = _time.strftime("%Y/%m/%d/%H", tm)
    stamp = _time.strftime("%Y-%m-%d-%H-%M-%S", tm)
    digest = hashlib.sha1(f"{arrival!r}{stream}{suffix}".encode()).hexdigest()
    uuid = f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"
    return f"{folder}/{stream}-{version}-{stamp}-{uuid}.gz"


def write_firehose(
    out_dir: str | os.PathLike[str],
    requests: Iterable[dict[str, Any]] | Any,
    fields: str | Sequence[str | Field] = DETECTION_FIELDS,
    *,
    seed: int = 0,
    seconds_per_file: float = 60.0,
) -> list[Path]:
    """Write requests in Firehose's layout under ``out_dir`` (one gzip object per ``seconds_per_file`` of records,
    in the hour folder of its oldest record) and the ``fields.txt``. Returns the files written."""
    parsed = parse_fields(fields)
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    (root / "fields.txt").write_text(fields_text(parsed), encoding="utf-8")
    table = complete(requests, seed=seed)
    times = np.asarray(table["timestamp"].to_numpy(zero_copy_only=False), dtype=np.float64)
    order = np.argsort(times, kind="stable")
    table, times = table.take(pa.array(order)), times[order]
    lines = tsv_lines(table, parsed)
    written: list[Path] = []
    if not len(times):
        return written
    bucket = np.floor((times - times[0]) / seconds_per_file).astype(np.int64)
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    ends = np.r_[starts[1:], len(times)]
    for i, (a, b) in enumerate(zip(starts, ends)):
        target = root / firehose_key(times[a], suffix=str(i))
        target.parent.mkdir(parents=True, exist_ok=True)
        chunk = "".join(line + "\n" for line in lines.slice(a, b - a).to_pylist()).encode("utf-8")
        target.write_bytes(gzip.compress(chunk, mtime=0))
        written.append(target)
    return written
