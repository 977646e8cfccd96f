"""The detection SQL: one Athena (Trino) text that parses as Trino, transpiles once and runs on DuckDB."""

from __future__ import annotations

import ipaddress
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest
import sqlglot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlglot import exp

from detection.logs.reader import open_logs
from detection.scoring.query import (
    BASELINE,
    FEATURES,
    OPTIONAL_COLUMNS,
    Query,
    QueryError,
    load_query,
    prepare_relation,
    queries,
)
from revocation.token_expiry import token_expiry
from tools.generate import generate_corpus
from tools.scenarios import Viewer, complete, playback, request, session_token

T0 = 1_767_225_600
WINDOW = (float(T0), float(T0 + 600))
SID = "querysession00001"


def logs_view(requests: list[dict[str, Any]], con: duckdb.DuckDBPyConnection | None = None, **extra: Any):
    """A DuckDB connection with a ``logs`` view over the completed requests (typed like detection.logs.reader)."""
    con = con or duckdb.connect()
    table = complete(requests)
    for name, values in extra.items():
        table = table.append_column(name, pa.array(values))
    con.register("logs_arrow", table)
    con.execute("CREATE OR REPLACE TEMP VIEW logs AS SELECT * FROM logs_arrow")
    return con


def features(con: duckdb.DuckDBPyConnection, window: tuple[float, float] = WINDOW) -> dict[str, dict[str, Any]]:
    table = load_query(FEATURES).run(con, window)
    return {row["session_id"]: row for row in table.to_pylist()}


@pytest.mark.parametrize("name", [FEATURES, BASELINE])
def test_the_text_is_trino_and_declares_its_parameters(name: str) -> None:
    query = load_query(name)
    assert name in queries()
    tree = sqlglot.parse_one(query.text, read="trino")  # parses as Athena/Trino
    window = ("window_start", "window_end", "window_start", "window_end")
    extra = ("shared_egress_asns", "location_free_asns") if name == FEATURES else ()
    assert len(list(tree.find_all(exp.Placeholder))) == len(query.parameters) == len(window + extra)
    assert query.parameters == window + extra
    assert query.partition == "dt"
    # round trip through the Trino generator, and transpilation that refuses anything DuckDB lacks
    text = tree.sql(dialect="trino", comments=False)
    assert sqlglot.parse_one(text, read="trino").sql(dialect="trino", comments=False) == text
    sqlglot.transpile(query.text, read="trino", write="duckdb", unsupported_level=sqlglot.ErrorLevel.RAISE)
    # one scan: `logs` is read once, and no CTE is read twice (Athena inlines CTEs)
    assert sum(1 for t in tree.find_all(exp.Table) if t.name == "logs") == 1
    names = [cte.alias for cte in tree.find_all(exp.CTE)]
    reads = [t.name for t in tree.find_all(exp.Table) if t.name in names]
    assert len(reads) == len(set(reads))


def test_duckdb_text_is_cached_named_and_without_the_partition_predicate() -> None:
    query = load_query(FEATURES)
    local = query.duckdb_sql()
    assert query.duckdb_sql() is local  # transpiled once
    assert "$window_start" in local and "$window_end" in local and "?" not in local
    assert "dt BETWEEN" not in local and "STRFTIME" not in local
    with_dt = query.duckdb_sql(partition_column=True)
    assert "dt BETWEEN" in with_dt and with_dt.count("$window_start") == 2


def test_features_run_on_duckdb() -> None:
    home = Viewer("198.51.100.7", asn=3320, country="DE")
    phone = Viewer("2001:db8:1:2::5", asn=3320, country="DE", user_agent="ExampleTV/5.1 (iPhone)")
    reqs = playback(SID, home, start=T0 + 10, duration=300) + playback(SID, phone, start=T0 + 20, duration=100)
    reqs.append(request(SID, "ch01-news/720p/seg_1.ts", timestamp=T0 + 30, viewer=home, sc_status=403))
    reqs.append(request(SID, "ch01-news/key.bin", timestamp=T0 + 31, viewer=home))  # not media
    con = logs_view(reqs)
    row = features(con)[SID]
    assert row["records"] == len(reqs)
    assert row["requests"] == len(reqs) - 2  # served media only
    segments = sum(1 for r in reqs if r["cs_uri_stem"].endswith(".ts") and r.get("sc_status", 200) == 200)
    assert row["segments"] == segments
    assert row["distinct_ips"] == row["distinct_prefixes"] == 2 and row["distinct_asns"] == 1
    assert row["countries"] == ["DE"] and row["channels"] == ["ch01-news"] and row["distinct_user_agents"] == 2
    assert row["first_seen"] == pytest.approx(T0 + 10) and row["max_ips_per_minute"] == 2
    assert row["main_channel"] == "ch01-news" and row["shared_segments"] > 0  # both fetched the same segments
    minutes = row["per_minute"]
    assert [m["minute"] for m in minutes] == sorted(m["minute"] for m in minutes)
    assert sum(m["segments"] for m in minutes) == segments


def test_the_window_filters_and_its_values_are_bound_not_spliced() -> None:
    home = Viewer("198.51.100.7")
    con = logs_view(playback(SID, home, start=T0 + 10, duration=300))
    inside = features(con, (T0 + 100.0, T0 + 200.0))[SID]
    assert T0 + 100 <= inside["first_seen"] and inside["last_seen"] < T0 + 200
    query = load_query(FEATURES)
    for bad in ("0; DROP TABLE logs_arrow", float("nan"), float("inf"), True, None, -1.0):
        with pytest.raises(QueryError):
            query.run(con, (bad, T0 + 100.0))
    with pytest.raises(QueryError, match="empty window"):
        query.run(con, (T0 + 100.0, T0 + 100.0))
    assert con.execute("SELECT count(*) FROM logs_arrow").fetchone()[0] > 0


def test_the_partition_predicate_prunes_when_the_relation_has_dt() -> None:
    home = Viewer("198.51.100.7")
    reqs = playback(SID, home, start=T0 + 10, duration=120) + playback("othersession00002", home, start=T0 + 10,
                                                                       duration=120)  # fmt: skip
    table = complete(reqs)
    dt = ["2026/01/01/00" if "querysession" in u else "2025/12/31/20" for u in table["cs_uri_stem"].to_pylist()]
    con = logs_view(reqs, dt=dt)
    con.execute("SET TimeZone = 'America/New_York'")  # the hour folders are UTC whatever the local time zone
    rows = features(con)
    assert set(rows) == {SID}  # the other session's hour folder is outside the window's
    assert "othersession00002" in features(logs_view(reqs))  # without dt, nothing is pruned


def test_athena_text_and_parameters() -> None:
    query = load_query(FEATURES)
    window = [repr(float(T0)), repr(float(T0 + 600))] * 2
    shared = "',13335,36183,36692,53813,54113,55256,62044,'"  # the shipped registry's shared-egress networks
    parameters = query.athena_parameters(T0, T0 + 600)
    assert parameters[:5] == [*window, shared] and ",14593," in parameters[5]  # ... and location-free (Starlink)
    mine = query.athena_parameters(T0, T0 + 600, {"shared_egress_asns": ",1,o'k,", "location_free_asns": ","})
    assert mine == [*window, "',1,o''k,'", "','"]
    with pytest.raises(QueryError, match="must be text"):
        query.athena_parameters(T0, T0 + 600, {"shared_egress_asns": 5})  # type: ignore[dict-item]
    text = query.athena_sql("cf_logs.realtime")
    tree = sqlglot.parse_one(text, read="trino")
    assert {t.sql() for t in tree.find_all(exp.Table) if t.name == "realtime"} == {"cf_logs.realtime"}
    assert len(list(tree.find_all(exp.Placeholder))) == 6
    with pytest.raises(QueryError):
        query.athena_sql("logs; DROP TABLE x")
    with pytest.raises(QueryError):
        Query.from_text("broken", "-- parameters: a\nSELECT 1 FROM logs WHERE x = ? AND y = ?")


def test_session_id_is_the_first_segment_up_to_the_first_dot() -> None:
    home = Viewer("198.51.100.7")
    reqs = [
        request(SID, "ch01-news/720p/seg_5.ts", timestamp=T0 + 1, viewer=home),
        {"timestamp": T0 + 2.0, "c_ip": "198.51.100.8", "cs_uri_stem": "/favicon.ico"},
        {"timestamp": T0 + 3.0, "c_ip": "198.51.100.8", "cs_uri_stem": "/"},
    ]
    rows = features(logs_view(reqs))
    assert rows[SID]["segments"] == 1
    assert rows["favicon"]["requests"] == 0 and rows["favicon"]["records"] == 1  # not media: counted as a record
    assert sum(r["records"] for r in rows.values()) == 3


ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.tuples(st.ip_addresses(v=6), st.sampled_from(["compressed", "exploded", "upper"])).map(
    lambda p: p[0].exploded if p[1] == "exploded" else str(p[0]).upper() if p[1] == "upper" else str(p[0])
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(ipv4, ipv6), min_size=1, max_size=12))
def test_prefixes_are_the_24_and_48_networks(addresses: list[str]) -> None:
    reqs = [
        request(SID, f"ch01-news/720p/seg_{k}.ts", timestamp=T0 + 5 + k, viewer=Viewer(ip), c_ip_version="-")
        for k, ip in enumerate(addresses)
    ]
    expected = {
        ipaddress.ip_network(f"{ip}/{24 if ':' not in ip else 48}", strict=False) for ip in addresses
    }
    row = features(logs_view(reqs))[SID]
    assert row["distinct_prefixes"] == len(expected)
    assert row["distinct_ips"] == len(set(addresses))


def test_missing_optional_fields_read_as_null_and_required_ones_are_named() -> None:
    home = Viewer("198.51.100.7")
    con = logs_view(playback(SID, home, start=T0 + 10, duration=120))
    con.execute("CREATE OR REPLACE TEMP VIEW thin AS SELECT timestamp, c_ip, sc_status, cs_uri_stem FROM logs")
    relation, missing = prepare_relation(con, "thin", "thin_detect")
    assert relation == "thin_detect" and set(missing) == set(OPTIONAL_COLUMNS)
    row = load_query(FEATURES).run(con, WINDOW, relation=relation).to_pylist()[0]
    assert row["segments"] > 0 and row["distinct_asns"] == 0 and row["bytes"] is None
    con.execute("CREATE OR REPLACE TEMP VIEW thinner AS SELECT timestamp, c_ip, sc_status FROM logs")
    with pytest.raises(QueryError, match="cs-uri-stem"):
        prepare_relation(con, "thinner")


def test_the_baseline_rule() -> None:
    desk = Viewer("198.51.100.7", user_agent="Mozilla/5.0 desktop")
    reqs = []
    for k in range(4):  # four quiet viewers: one address, one user agent
        reqs += playback(f"quietsession0000{k}", Viewer(f"198.51.100.{20 + k}"), start=T0 + 10, duration=300)
    noisy = "noisysession00001"
    reqs += playback(noisy, desk, start=T0 + 10, duration=300, cs_referer="https://a.example/")
    reqs += playback(noisy, Viewer("203.0.113.5", user_agent="Other/1.0"), start=T0 + 12, duration=300,
                     cs_referer="https://b.example/")  # fmt: skip
    reqs += playback("shortsession00001", desk, start=T0 + 10, duration=20)  # under 30 s: not rated
    con = logs_view(reqs)
    table = load_query(BASELINE).run(con, WINDOW)
    rows = {r["session_id"]: r for r in table.to_pylist()}
    assert "shortsession00001" not in rows
    quiet = rows["quietsession00000"]
    assert not quiet["flagged"] and quiet["score"] == pytest.approx(1.0, abs=0.1)  # rate / median rate
    loud = rows[noisy]
    assert loud["ips"] == 2 and loud["user_agents"] == 2 and loud["referers"] == 2
    assert loud["flagged"] and loud["score"] == pytest.approx(loud["rate"] / quiet["rate"] + 3, rel=0.05)


def test_the_baseline_divides_by_the_exact_median_and_gives_one_answer() -> None:
    """Rates of 1x, 2x and 3x of a base rate, and a fourth session: the median of four is the mean of the middle two,
    exactly; an approximate percentile would depend on how the engine merged its partial results."""
    reqs = []
    for k, step in enumerate((4.0, 2.0, 4 / 3, 1.0)):  # a request every `step` seconds: rates 1/4, 1/2, 3/4, 1
        reqs += [{**r, "timestamp": T0 + 10 + i * step} for i, r in enumerate(
            playback(f"ratesession00000{k}", Viewer(f"198.51.100.{30 + k}"), start=T0 + 10, duration=300,
                     cs_referer="https://a.example/"))]
    con = logs_view(reqs)
    runs = [load_query(BASELINE).run(con, WINDOW).sort_by("session_id").to_pylist() for _ in range(3)]
    assert runs[0] == runs[1] == runs[2]
    rates = sorted(r["rate"] for r in runs[0])
    median = (rates[1] + rates[2]) / 2
    for row in runs[0]:
        assert row["score"] == pytest.approx(row["rate"] / median, rel=1e-9)


# -- tokens: the <session_id>.<jwt> segments a session was served with (for the expiry of its revocation) -----------


MEDIA_SUFFIXES = (".m3u8", ".mpd", ".ts", ".m4s", ".mp4", ".aac", ".m4a", ".m4v", ".cmfv", ".cmfa", ".mp3")


def token_of(uri: str) -> str:
    return uri.split("/")[1]


def test_tokens_is_the_last_column_a_list_of_text() -> None:
    con = logs_view(playback(SID, Viewer("198.51.100.7"), start=T0 + 10, duration=60))
    table = load_query(FEATURES).run(con, WINDOW)
    assert table.column_names[-1] == "tokens"
    assert table.schema.field("tokens").type == pa.list_(pa.string())
    tree = sqlglot.parse_one(load_query(FEATURES).text, read="trino")  # the Athena text has it too
    assert tree.named_selects[-1] == "tokens"


def test_tokens_are_the_served_media_tokens_only() -> None:
    home, other = Viewer("198.51.100.7"), Viewer("203.0.113.9")

    def tok(exp: int) -> str:
        return session_token(SID, iat=T0 - 60, exp=exp)

    served = [tok(T0 + 3600), tok(T0 + 7200)]  # a token renewed during playback
    reqs = playback(SID, home, start=T0 + 10, duration=60, token=served[0])
    reqs += playback(SID, other, start=T0 + 100, duration=60, token=served[1], master=False)
    denied, not_media, shallow, failed = tok(T0 + 10**6), tok(T0 + 10**6 + 1), tok(T0 + 10**6 + 2), tok(T0 + 10**6 + 3)
    reqs.append(request(SID, "ch01-news/720p/seg_9.ts", timestamp=T0 + 30, viewer=other, token=denied, sc_status=403))
    reqs.append(request(SID, "ch01-news/key.bin", timestamp=T0 + 31, viewer=home, token=not_media))
    reqs.append(request(SID, "master.m3u8", timestamp=T0 + 32, viewer=home, token=shallow))  # no channel folder
    reqs.append(request(SID, "ch01-news/720p/seg_9.ts", timestamp=T0 + 33, viewer=home, token=failed, sc_status=502))
    reqs.append(request(SID, "ch01-news/720p/seg_9.ts", timestamp=T0 + 700, viewer=home, token=tok(T0 + 5)))  # later
    reqs.append({"timestamp": T0 + 2.0, "c_ip": "198.51.100.8", "cs_uri_stem": "/favicon.ico"})
    rows = features(logs_view(reqs))
    expected = sorted(f"{SID}.{t}" for t in served)
    assert rows[SID]["tokens"] == expected
    assert sorted(token_expiry(t) for t in rows[SID]["tokens"]) == [T0 + 3600, T0 + 7200]
    assert rows[SID]["records"] == len(reqs) - 2  # the denied, failed... requests still count as records
    assert rows["favicon"]["tokens"] is None  # no served media request: no token (like the other lists)


def test_tokens_are_capped_at_16_the_first_in_order() -> None:
    home = Viewer("198.51.100.7")
    tokens = [session_token(SID, iat=T0 - 60, exp=T0 + 3600 + k) for k in range(20)]
    reqs = [
        request(SID, f"ch01-news/720p/seg_{k}.ts", timestamp=T0 + 10 + k, viewer=home, token=token)
        for k, token in enumerate(tokens + tokens)  # each token twice: distinct values
    ]
    row = features(logs_view(reqs))[SID]
    assert row["tokens"] == sorted(f"{SID}.{t}" for t in tokens)[:16]


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Any, Any]:
    root = tmp_path_factory.mktemp("tokens-corpus")
    summary = generate_corpus(root, sessions=300, minutes=3, seed=23)
    return root, summary


def test_tokens_of_a_generated_corpus_parse_to_the_generators_exp(generated) -> None:
    import pandas as pd

    root, summary = generated
    labels = pd.read_csv(root / "labels.csv").set_index("session_id")
    window = (summary.start_epoch, summary.end_epoch)
    with open_logs(root, window=window) as logs:
        rows = load_query(FEATURES).run(logs.con, window).to_pylist()
        # what the column must hold, computed here from the records
        truth: dict[str, set[str]] = {}
        for uri, status in logs.con.execute("SELECT cs_uri_stem, sc_status FROM logs").fetchall():
            token = token_of(uri)
            media = uri.count("/") >= 3 and uri.endswith(MEDIA_SUFFIXES)
            if 200 <= status < 300 and media:
                truth.setdefault(token.split(".")[0], set()).add(token)
    by_session = {r["session_id"]: r for r in rows}
    assert {s for s, r in by_session.items() if r["tokens"]} == set(truth)
    for session_id, row in by_session.items():
        if not row["tokens"]:
            continue
        assert row["tokens"] == sorted(truth[session_id])[:16]
        assert all(t.startswith(session_id + ".") for t in row["tokens"])
        # the generator issues one token per session: its exp is the label's
        assert {token_expiry(t) for t in row["tokens"]} == {int(labels.loc[session_id, "exp"])}
    forged = labels.index[labels["kind"] == "forged_requests"]
    assert len(forged) and all(len(by_session[s]["tokens"]) == 1 for s in forged)  # the 403s add nothing


def in_any_order(reqs: list[dict[str, Any]], runs: int = 8) -> list[dict[str, dict[str, Any]]]:
    """The features of the same records, fed to DuckDB (two threads) in ``runs`` different orders."""
    reqs = [{"sc_bytes": 100_000 + i, **r} for i, r in enumerate(reqs)]  # not drawn at random in record order
    out = []
    for seed in range(runs):
        order = np.random.default_rng(seed).permutation(len(reqs))
        out.append(features(logs_view([reqs[i] for i in order], duckdb.connect(config={"threads": 2}))))
    return out


def test_the_main_channel_of_a_tie_is_the_same_whatever_the_order_of_the_records() -> None:
    # two addresses, each on a channel of its own, with as many segments each: the policy takes the main channel's
    # real-time pace, so a tie must not be settled by the order in which the engine happens to meet the rows
    reqs = playback(SID, Viewer("198.51.100.7"), start=T0 + 10, duration=120, channel="ch05-music")
    reqs += playback(SID, Viewer("203.0.113.9"), start=T0 + 10, duration=120, channel="ch02-sports")
    reqs += playback(SID, Viewer("192.0.2.44"), start=T0 + 10, duration=60, channel="ch09-local")  # fewer segments
    # the most segments, and on a tie the alphabetically last channel
    assert {run[SID]["main_channel"] for run in in_any_order(reqs)} == {"ch05-music"}


def test_the_same_records_in_any_order_give_the_same_features() -> None:
    # a session served in three countries (the travel cells are listed) by addresses of two networks
    reqs = playback(SID, Viewer("198.51.100.7", country="DE"), start=T0 + 10, duration=90)
    reqs += playback(SID, Viewer("203.0.113.9", asn=7922, country="US"), start=T0 + 200, duration=90, master=False)
    reqs += playback(SID, Viewer("192.0.2.44", country="FR"), start=T0 + 400, duration=90, master=False)
    runs = in_any_order(reqs)
    assert len(runs[0][SID]["country_cells"]) == 3
    assert all(run == runs[0] for run in runs[1:])


def test_percent_encoded_names_are_decoded_before_they_are_classified() -> None:
    """The function forwards what the viewer spelled and the origin decodes it: ``seg_00042.t%73`` is the segment
    ``seg_00042.ts`` of ``ch01-news`` whoever spells it so, and a malformed escape is kept as it came."""
    home = Viewer("198.51.100.7", asn=3320, country="DE")
    plain = playback(SID, home, start=T0 + 10, duration=240)
    other = "querysession00002"
    spelled = []
    for r in playback(other, home, start=T0 + 10, duration=240):
        stem = r["cs_uri_stem"]
        name = stem.rsplit("/", 1)[-1]
        encoded = name[:-1] + "%" + format(ord(name[-1]), "02X")  # the last letter of the extension, escaped
        spelled.append({**r, "cs_uri_stem": stem.replace("ch01-news", "ch01%2Dnews").rsplit("/", 1)[0] + "/" + encoded})
    odd = request(other, "ch01-news/720p/seg_%zz.ts", timestamp=T0 + 200, viewer=home)
    rows = features(logs_view(plain + spelled + [odd]))
    expected, decoded = rows[SID], rows[other]
    assert decoded["channels"] == expected["channels"] == ["ch01-news"]
    assert decoded["main_channel"] == expected["main_channel"]
    assert decoded["segments"] == expected["segments"] + 1  # the malformed escape still ends in .ts
    assert decoded["requests"] == expected["requests"] + 1
