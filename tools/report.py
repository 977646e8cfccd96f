"""The HTML report of a local pipeline run (``python -m detection demo``): one self-contained file.

:func:`render_report` fills ``tools/templates/report.html.j2`` (Jinja2, autoescape on: every value from the logs,
user agents above all, is text, never markup) with a :class:`ReportData`; the figures are matplotlib images
embedded as ``data:`` URIs (PNG for the per-session timelines, SVG for the small charts), so the file needs
nothing else to open. No template output is marked safe.

:func:`load_session_requests` reads the raw log records of a few sessions with DuckDB through
:func:`detection.logs.reader.open_logs` (never the whole input into Python); :func:`timeline_figure` turns one session's
records into a timeline (time on x, one lane per address, or per network when there are too many addresses,
coloured by country).

The flagged sessions are drawn as in the report for your own logs: :mod:`tools.session_cards` and
``templates/_flagged.html.j2``.

jinja2 and matplotlib are the ``demo`` extra: imported only when a report is made.
"""

from __future__ import annotations

import base64
import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.files import replace_file

if TYPE_CHECKING:
    from tools.session_cards import FlaggedSessions

__all__ = [
    "REQUEST_COLUMNS",
    "ReplayRow",
    "ReportData",
    "chart_reasons",
    "chart_scores",
    "load_session_requests",
    "render_report",
    "session_slices",
    "timeline_figure",
    "write_report",
]

#: The columns :func:`load_session_requests` returns (NULL where the field list lacks the field).
REQUEST_COLUMNS = ("session_id", "timestamp", "c_ip", "asn", "c_country", "sc_status", "cs_uri_stem", "cs_user_agent")
#: More addresses than this in one session: the timeline's lanes are its networks (ASN) instead.
MAX_ADDRESS_LANES = 24
#: At most this many lanes in a timeline (the busiest ones; the rest are counted in the title).
MAX_LANES = 30
TEMPLATE = "report.html.j2"
#: The charts' legend: ground truth where the corpus has labels; "unknown" is a session without one (your own logs).
GROUP_LABELS = {"pirate": "pirate", "legit": "legit", "unknown": "no label"}


# -- reading the records of a few sessions -----------------------------------------------------------------------


def load_session_requests(
    logs: str | os.PathLike[str],
    session_ids: Iterable[str],
    *,
    window: tuple[float, float] | None = None,
    fields: Any = None,
) -> pa.Table:
    """Every record of ``session_ids`` in the log input at ``logs`` (within ``window``), ordered by session and time,
    as an Arrow table of :data:`REQUEST_COLUMNS`. The session id is cut from ``cs-uri-stem`` as the detection SQL
    cuts it (``/<session_id>.<jwt>/...``); the filtering is DuckDB's, only the sessions' rows reach Python."""
    from detection.logs.reader import open_logs

    wanted = sorted({str(s) for s in session_ids})
    empty = pa.table({name: pa.array([], _ARROW_TYPES[name]) for name in REQUEST_COLUMNS})
    if not wanted:
        return empty
    with open_logs(logs, fields=fields, window=window, view="report_logs") as source:
        have = {f.column for f in source.fields}
        if "cs_uri_stem" not in have or "timestamp" not in have:
            raise ValueError("the log field list needs cs-uri-stem and timestamp to show sessions")
        select = ", ".join(
            name if name in have else f"CAST(NULL AS {_SQL_TYPES[name]}) AS {name}" for name in REQUEST_COLUMNS[1:]
        )
        sql = f"""
            WITH cut AS (
              SELECT split_part(cs_uri_stem, '/', 2) AS token, * FROM {source.view}
            ),
            named AS (
              SELECT CASE WHEN strpos(token, '.') > 0 THEN substr(token, 1, strpos(token, '.') - 1) ELSE token END
                       AS session_id, * EXCLUDE (token)
              FROM cut
            )
            SELECT session_id, {select}
            FROM named
            WHERE session_id IN (SELECT unnest(CAST(? AS VARCHAR[])))
            ORDER BY session_id, "timestamp"
        """
        table = source.run(lambda con: con.sql(sql, params=[wanted]).to_arrow_table())
    return table.select(list(REQUEST_COLUMNS)).cast(pa.schema([(n, _ARROW_TYPES[n]) for n in REQUEST_COLUMNS]))


_SQL_TYPES = {"timestamp": "DOUBLE", "c_ip": "VARCHAR", "asn": "BIGINT", "c_country": "VARCHAR",
              "sc_status": "INTEGER", "cs_uri_stem": "VARCHAR", "cs_user_agent": "VARCHAR"}  # fmt: skip
_ARROW_TYPES = {"session_id": pa.string(), "timestamp": pa.float64(), "c_ip": pa.string(), "asn": pa.int64(),
                "c_country": pa.string(), "sc_status": pa.int32(), "cs_uri_stem": pa.string(),
                "cs_user_agent": pa.string()}  # fmt: skip


def session_slices(requests: pa.Table) -> dict[str, tuple[int, int]]:
    """``session_id -> (start, stop)`` row ranges of a table ordered by session (as :func:`load_session_requests`)."""
    if requests.num_rows == 0:
        return {}
    ids = np.asarray(requests["session_id"].to_numpy(zero_copy_only=False), dtype=object)
    bounds = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1], True])
    return {str(ids[a]): (int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])}


# -- figures -------------------------------------------------------------------------------------------------------


def _plain(text: Any) -> str:
    """Text for a matplotlib label: never mathtext (a ``$`` in a log value must not be parsed)."""
    return str(text).replace("$", r"\$")


def _data_uri(figure: Any, fmt: str, dpi: int = 80) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format=fmt, dpi=dpi, metadata={"Date": None} if fmt == "svg" else None)
    mime = "image/svg+xml" if fmt == "svg" else "image/png"
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def _figure(width: float, height: float, *, left: float = 1.6, right: float = 0.2, top: float = 0.3,
            bottom: float = 0.5) -> Any:
    """A figure of ``width`` x ``height`` inches whose axes leave the given margins (inches): fixed margins draw
    once, where a layout engine would draw every figure twice to measure it."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    figure = Figure(figsize=(width, height))
    figure.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height, bottom=bottom / height)
    return figure


def _clock(epoch: float, _pos: Any = None) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S")


def timeline_figure(
    requests: pa.Table,
    *,
    run_at: float | None = None,
    replay: tuple[float, int, str, str] | None = None,
) -> tuple[str, str]:
    """One session's records as a timeline image (a PNG ``data:`` URI) and a one-line note on what the lanes are.

    Time on x; one lane per address (per network (ASN) beyond :data:`MAX_ADDRESS_LANES` addresses), labelled with
    its network and country; points coloured by country; requests the edge did not serve (non-2xx) as grey
    crosses. ``run_at``: the detection run (a dashed line); ``replay``: ``(time, status, reason, address)`` of the
    request replayed through the edge function after the run (a star on its lane)."""
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    ts = np.asarray(requests["timestamp"].to_numpy(zero_copy_only=False), dtype=np.float64)
    ips = [str(v) if v is not None else "-" for v in requests["c_ip"].to_pylist()]
    asns = ["?" if v is None else str(v) for v in requests["asn"].to_pylist()]
    countries = [str(v) if v is not None else "??" for v in requests["c_country"].to_pylist()]
    status = np.asarray(pc.fill_null(requests["sc_status"], 0).to_numpy(zero_copy_only=False))
    served = (status >= 200) & (status < 300)

    by_address = len(set(ips)) <= MAX_ADDRESS_LANES
    keys = ips if by_address else asns
    first: dict[str, float] = {}
    counts: dict[str, int] = {}
    lane_country: dict[str, str] = {}
    lane_asn: dict[str, str] = {}
    for key, t, asn, cc in zip(keys, ts.tolist(), asns, countries):
        if key not in first:
            first[key] = t
            lane_country[key] = cc
            lane_asn[key] = asn
        counts[key] = counts.get(key, 0) + 1
    lanes = sorted(first, key=lambda k: first[k])
    hidden = 0
    if len(lanes) > MAX_LANES:
        keep = set(sorted(lanes, key=lambda k: -counts[k])[:MAX_LANES])
        hidden = len(lanes) - MAX_LANES
        lanes = [k for k in lanes if k in keep]
    index = {k: i for i, k in enumerate(lanes)}
    y = np.array([index.get(k, -1) for k in keys], dtype=np.int64)
    shown = y >= 0

    country_names = sorted(set(countries))
    palette = _palette(len(country_names))
    colour_of = {c: palette[i] for i, c in enumerate(country_names)}
    country_of = np.asarray(countries, dtype=object)

    height = 1.0 + 0.22 * max(len(lanes), 3)
    fig = _figure(13.0, height, left=2.9, right=2.2, top=0.15, bottom=0.6)
    ax = fig.add_subplot()
    ok = shown & served
    for cc in country_names:
        mask = ok & (country_of == cc)
        if mask.any():
            ax.scatter(ts[mask], y[mask], s=9, marker="|", color=colour_of[cc], label=_plain(cc), linewidths=1.2)
    bad = shown & ~served
    if bad.any():
        ax.scatter(ts[bad], y[bad], s=14, marker="x", color="#888888", label="not served (non-2xx)", linewidths=0.8)
    if run_at is not None:
        ax.axvline(run_at, color="#b00020", linestyle="--", linewidth=1.0, label="detection run")
    if replay is not None:
        at, code, reason, address = replay
        lane_key = address if by_address else next((a for i, a in zip(ips, asns) if i == address), None)
        lane = index.get(lane_key, len(lanes) - 1) if lanes else 0
        colour = "#b00020" if code >= 400 else "#1b7f3b"
        ax.scatter([at], [lane], s=110, marker="*", color=colour, zorder=5,
                   label=_plain(f"replayed: {code} {reason}"))  # fmt: skip
    ax.set_yticks(range(len(lanes)))
    if by_address:
        labels = [f"{k}  AS{lane_asn[k]} {lane_country[k]}" for k in lanes]
    else:
        labels = [f"AS{k} {lane_country[k]}" for k in lanes]
    ax.set_yticklabels([_plain(t) for t in labels], fontsize=9, family="monospace")
    ax.set_ylim(-0.8, max(len(lanes), 1) - 0.2)
    ax.invert_yaxis()
    ax.xaxis.set_major_locator(MultipleLocator(_time_step(ax.get_xlim())))
    ax.xaxis.set_major_formatter(FuncFormatter(_clock))
    ax.tick_params(axis="x", labelsize=10)
    ax.set_xlabel("time (UTC)", fontsize=10)
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    handles, names = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles[:14], names[:14], fontsize=9, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False,
                  markerscale=1.5)  # fmt: skip
    lane_kind = "address" if by_address else "network (ASN)"
    note = f"{len(requests)} records; one lane per {lane_kind}, colour = country"
    if not by_address:
        note += f" ({len(set(ips))} addresses)"
    if hidden:
        note += f"; {hidden} quieter lanes not drawn"
    return _data_uri(fig, "png", dpi=100), note  # 1300 px wide: 9 pt is 12.5 px on a 1400 px screen


def _time_step(limits: tuple[float, float]) -> float:
    """A tick step in seconds that falls on whole minutes (or seconds) of the clock: at most about 8 ticks."""
    span = max(limits[1] - limits[0], 1.0)
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600):
        if span / step <= 8:
            return float(step)
    return 43200.0


def _palette(n: int) -> list[str]:
    from matplotlib import colormaps

    if n <= 10:
        cmap = colormaps["tab10"]
        return [_hex(cmap(i)) for i in range(n)]
    cmap = colormaps["tab20"]  # its strong colours first, then their light twins
    order = [*range(0, 20, 2), *range(1, 20, 2)]
    return [_hex(cmap(order[i % 20])) for i in range(n)]


def _hex(rgba: Sequence[float]) -> str:
    return "#" + "".join(f"{int(round(c * 255)):02x}" for c in rgba[:3])


def chart_reasons(counts: Mapping[str, Mapping[str, int]]) -> str:
    """Horizontal bars: how often each reason fired, split by ground truth (``{reason: {"pirate": n, "legit": m}}``),
    as an SVG ``data:`` URI."""
    from matplotlib.ticker import MaxNLocator

    reasons = sorted(counts, key=lambda r: sum(counts[r].values()))
    fig = _figure(7.0, 0.9 + 0.3 * max(len(reasons), 2), left=2.1, right=1.3)
    ax = fig.add_subplot()
    left = np.zeros(len(reasons))
    for group, colour in (("pirate", "#b00020"), ("legit", "#1f77b4"), ("unknown", "#999999")):
        values = np.array([counts[r].get(group, 0) for r in reasons], dtype=float)
        if values.any():
            ax.barh(range(len(reasons)), values, left=left, color=colour, label=GROUP_LABELS[group])
            left += values
    ax.set_yticks(range(len(reasons)))
    ax.set_yticklabels([_plain(r) for r in reasons], fontsize=10)
    ax.set_xlabel("flagged sessions where the reason fired", fontsize=10)
    ax.tick_params(axis="x", labelsize=10)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if reasons:
        ax.legend(fontsize=10, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _data_uri(fig, "svg")


def chart_scores(scores: Mapping[str, Sequence[float]], *, revoke_at: float, flag_at: float) -> str:
    """Histogram of the flagged sessions' scores by ground truth (``{"pirate": [...], "legit": [...]}``), with the
    flag and revoke thresholds, as an SVG ``data:`` URI."""
    from matplotlib.ticker import MaxNLocator

    fig = _figure(7.0, 3.0, left=0.8, right=1.6, bottom=0.6)
    ax = fig.add_subplot()
    every = [s for values in scores.values() for s in values]
    top = max([*every, revoke_at]) if every else revoke_at
    bins = np.arange(0.0, math.ceil(top * 4) / 4 + 0.5, 0.25)
    groups = [(g, c) for g, c in (("pirate", "#b00020"), ("legit", "#1f77b4"), ("unknown", "#999999")) if scores.get(g)]
    if groups:
        ax.hist([scores[g] for g, _ in groups], bins=bins, stacked=True, color=[c for _, c in groups],
                label=[GROUP_LABELS[g] for g, _ in groups])  # fmt: skip
    ax.axvline(flag_at, color="#e69f00", linestyle=":", linewidth=1.2, label=f"flag ≥ {flag_at:g}")
    ax.axvline(revoke_at, color="#b00020", linestyle="--", linewidth=1.2, label=f"revoke ≥ {revoke_at:g}")
    ax.set_xlabel("score", fontsize=10)
    ax.set_ylabel("sessions", fontsize=10)
    ax.tick_params(labelsize=10)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=10, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _data_uri(fig, "svg")


# -- the report ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayRow:
    """One request replayed through the edge function after the run, and what it should have got."""

    session_id: str
    group: str  # "pirate" (revoked pirate sessions) or "legit" (legit viewers)
    kind: str
    revoked: bool
    uri: str
    ip: str
    country: str
    user_agent: str  # plain text (decoded from the log)
    at: float
    status: int
    reason: str
    expected: str  # "200" or "403 revoked"

    @property
    def ok(self) -> bool:
        return f"{self.status} {self.reason}".startswith(self.expected)

    @property
    def short_uri(self) -> str:
        """The URI with the token shortened (``/<sid>.eyJ…/ch01/720p/seg_1.ts``)."""
        parts = self.uri.split("/", 2)
        if len(parts) == 3 and "." in parts[1]:
            sid, _, jwt = parts[1].partition(".")
            return f"/{sid}.{jwt[:6]}…/{parts[2]}"
        return self.uri

    def to_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "group": self.group,
            "kind": self.kind,
            "revoked": self.revoked,
            "uri": self.uri,
            "ip": self.ip,
            "country": self.country,
            "user_agent": self.user_agent,
            "at": self.at,
            "status": self.status,
            "reason": self.reason,
            "expected": self.expected,
            "ok": self.ok,
        }


@dataclass
class ReportData:
    """Everything the report shows. Plain values; the template formats them."""

    title: str
    run: dict[str, Any]
    steps: list[dict[str, Any]]
    evaluation: dict[str, Any]
    flagged: FlaggedSessions  # tools.session_cards
    replays: list[ReplayRow]
    charts: dict[str, str] = field(default_factory=dict)
    detect_timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def replay_summary(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for row in self.replays:
            entry = out.setdefault(row.group, {"total": 0, "ok": 0})
            entry["total"] += 1
            entry["ok"] += int(row.ok)
        return out


def iso_utc(epoch: Any) -> str:
    """Epoch seconds as ISO 8601 UTC (``2026-01-01T00:02:03Z``); ``-`` for nothing, or for what is no time."""
    if epoch is None or isinstance(epoch, bool):
        return "-"
    try:
        return datetime.fromtimestamp(float(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):
        return "-"


def _pretty(value: Any) -> str:
    """A feature value or threshold as short text: lists joined, floats trimmed."""
    if isinstance(value, bool) or value is None:
        return str(value).lower() if isinstance(value, bool) else "-"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if math.isfinite(value) else "-"
    if isinstance(value, (list, tuple)):
        items = [_pretty(v) for v in value]
        return ", ".join(items[:20]) + (f", … ({len(items)} in all)" if len(items) > 20 else "")
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {_pretty(v)}" for k, v in value.items())
    return str(value)


def template_environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent / "templates"),
        autoescape=True,  # every value is text: a user agent from the logs must never become markup
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["utc"] = iso_utc
    env.filters["pretty"] = _pretty
    env.filters["clock"] = _clock
    return env


def render_report(data: ReportData) -> str:
    """The report's HTML."""
    return template_environment().get_template(TEMPLATE).render(data=data,
                                                             generated=iso_utc(datetime.now(UTC).timestamp()))


def write_report(path: str | os.PathLike[str], data: ReportData) -> Path:
    """Render the report to ``path`` and return the path."""
    return write_html(path, render_report(data))


def write_html(path: str | os.PathLike[str], html: str) -> Path:
    """``html`` into ``path`` (written to a temporary file, then moved into place: never half a page)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    replace_file(target, html.encode("utf-8"), new_file_mode=0o644)
    return target
