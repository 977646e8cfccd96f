import base64
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from detection.logs.reader import open_logs
from detection.logs.schema import DETECTION_FIELDS, FIELDS_BY_NAME, parse_fields
from tools.generate import DEFAULT_MIX, KINDS, LEGIT_KINDS, MIXES, PIRATE_KINDS, _session_ids, generate_corpus
from tools.scenarios import Viewer, complete, encode_user_agent, playback, records, request, session_token

SESSIONS, MINUTES, SEED = 400, 4, 11
SID_SQL = "split_part(split_part(cs_uri_stem, '/', 2), '.', 1)"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("corpus")
    summary = generate_corpus(root, sessions=SESSIONS, minutes=MINUTES, seed=SEED)
    return root, summary


def _digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "corpus.json"
    }


def test_layout_and_summary(corpus) -> None:
    root, summary = corpus
    assert parse_fields((root / "fields.txt").read_text()) == list(DETECTION_FIELDS)
    objects = sorted(root.glob("2026/01/01/00/*.gz"))
    assert len(objects) == summary.files >= MINUTES  # one Firehose object per 60 s buffer at least
    name = re.compile(r"cf-realtime-logs-1-2026-01-01-00-\d\d-\d\d-[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}\.gz")
    assert all(name.fullmatch(p.name) for p in objects)
    assert json.loads((root / "corpus.json").read_text())["records"] == summary.records
    assert summary.sessions == SESSIONS == summary.legit + summary.pirates


def test_deterministic_given_the_seed(corpus, tmp_path: Path) -> None:
    root, _ = corpus
    generate_corpus(tmp_path / "again", sessions=SESSIONS, minutes=MINUTES, seed=SEED, workers=1)
    assert _digest(tmp_path / "again") == _digest(root)
    generate_corpus(tmp_path / "other", sessions=SESSIONS, minutes=MINUTES, seed=SEED + 1)
    assert _digest(tmp_path / "other")["labels.csv"] != _digest(root)["labels.csv"]


def test_kinds_and_proportions(corpus) -> None:
    root, summary = corpus
    labels = pd.read_csv(root / "labels.csv")
    assert len(labels) == SESSIONS and labels["session_id"].is_unique
    assert set(labels["kind"]) == set(MIXES[DEFAULT_MIX])  # every kind of the default mix present
    assert set(labels["label"]) == {"legit", "pirate"}
    assert labels["label"].eq(labels["kind"].map(lambda k: KINDS[k].label)).all()
    share = (labels["label"] == "pirate").mean()
    assert 0.02 <= share <= 0.06
    assert (labels["kind"] == "plain").mean() > 0.4  # plain single-address viewers are the majority
    assert summary.kinds == labels["kind"].value_counts().to_dict()
    assert set(LEGIT_KINDS) | set(PIRATE_KINDS) == set(KINDS)
    from_parquet = pd.read_parquet(root / "labels.parquet")
    assert list(from_parquet.columns) == list(labels.columns) and from_parquet["session_id"].tolist() == labels[
        "session_id"
    ].tolist()


def test_records_are_valid_and_match_the_labels(corpus) -> None:
    root, summary = corpus
    labels = pd.read_csv(root / "labels.csv", keep_default_na=False).set_index("session_id")
    with open_logs(root) as logs:
        all_columns = ", ".join(f.column for f in DETECTION_FIELDS)
        n = logs.execute(f"SELECT count(*) n FROM (SELECT DISTINCT {all_columns} FROM logs)").to_pylist()[0]["n"]
        report = logs.report(n)
        served = logs.execute(
            f"SELECT {SID_SQL} sid, string_agg(DISTINCT c_ip, ';' ORDER BY c_ip) ips, count(*) n, "
            f"count(DISTINCT cs_uri_stem[2:strpos(cs_uri_stem[2:], '/')]) tokens, min(timestamp) lo, max(timestamp) hi "
            f"FROM logs WHERE sc_status BETWEEN 200 AND 299 GROUP BY 1"
        ).to_pandas().set_index("sid")
        statuses = dict(logs.con.execute("SELECT sc_status, count(*) FROM logs GROUP BY 1").fetchall())
        uri = logs.con.execute("SELECT cs_uri_stem FROM logs WHERE cs_uri_stem LIKE '%.ts' LIMIT 1").fetchall()[0][0]
        ua = logs.con.execute("SELECT cs_user_agent FROM logs LIMIT 1").fetchall()[0][0]
        ranges = logs.con.execute(
            "SELECT count(*) FROM logs WHERE sc_status = 206 AND sc_range_end > sc_range_start"
        ).fetchall()[0][0]
    assert n == summary.records and not report.records_skipped  # every record parses under the schema
    assert {200, 206, 403, 404} <= set(statuses)
    assert ranges == statuses[206]
    assert " " not in ua and "%20" in ua
    assert re.fullmatch(r"/[A-Za-z0-9_-]{16,32}\.[\w-]+\.[\w-]+\.[\w-]+/[\w-]+/\d+p/seg_\d+\.ts", uri)
    # ground truth = records: same sessions, same served addresses, one token per session
    assert set(served.index) == set(labels.index[labels["requests_2xx"] > 0])
    joined = served.join(labels.rename(columns={"ips": "ips_label"}))
    assert joined["ips"].equals(joined["ips_label"].map(lambda s: ";".join(sorted(s.split(";")))))
    assert (joined["n"] == joined["requests_2xx"]).all()
    assert (joined["tokens"] == 1).all()
    assert (joined["lo"] >= summary.start_epoch).all() and (joined["hi"] < summary.end_epoch).all()


def test_tokens_carry_sid_and_exp(corpus) -> None:
    root, _ = corpus
    labels = pd.read_csv(root / "labels.csv").set_index("session_id")
    with open_logs(root) as logs:
        rows = logs.con.execute("SELECT DISTINCT split_part(cs_uri_stem, '/', 2) FROM logs").fetchall()
    assert len(rows) == SESSIONS
    for (segment,) in rows[:50]:
        sid, header, payload, signature = re.split(r"\.", segment)
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        head = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
        assert claims["sid"] == sid and claims["exp"] == labels.loc[sid, "exp"] and claims["exp"] > claims["iat"]
        assert head["alg"] == "HS256" and head["kid"]


def test_kinds_look_like_their_description(corpus) -> None:
    root, _ = corpus
    labels = pd.read_csv(root / "labels.csv", keep_default_na=False)
    by_kind = labels.groupby("kind")
    assert (by_kind.get_group("plain")["n_ips"] == 1).all()
    assert (by_kind.get_group("dual_stack")["ips"].map(lambda s: any(":" in ip for ip in s.split(";")))).mean() > 0.8
    assert (by_kind.get_group("wifi_lte")["asns"].str.count(";") == 1).all()
    assert (by_kind.get_group("privacy_relay")["countries"].str.count(";") == 0).all()
    assert (by_kind.get_group("token_sharing")["n_ips"] >= 5).all()
    assert (by_kind.get_group("two_homes")["countries"].str.count(";") == 1).all()
    assert (by_kind.get_group("restreamer")["n_ips"] == 1).all()
    assert by_kind.get_group("slow_leak")["n_ips"].between(3, 4).all()
    assert (by_kind.get_group("resale_travel")["countries"].str.count(";") >= 2).all()
    assert (by_kind.get_group("resale_proxy")["n_ips"] >= 6).all()
    assert (by_kind.get_group("multi_channel")["channels"].str.count(";") >= 1).all()
    assert (by_kind.get_group("casting")["streams"] == 2).all()


def test_any_field_list_is_written_validly(tmp_path: Path) -> None:
    from detection.logs.schema import ALL_FIELDS

    summary = generate_corpus(tmp_path, sessions=40, minutes=1, seed=2, fields=ALL_FIELDS)
    with open_logs(tmp_path) as logs:
        columns = ", ".join(f.column for f in ALL_FIELDS)
        n = logs.execute(f"SELECT count(*) n FROM (SELECT DISTINCT {columns} FROM logs)").to_pylist()[0]["n"]
        assert n == summary.records and not logs.report(n).records_skipped
    narrow = generate_corpus(tmp_path / "narrow", sessions=40, minutes=1, seed=2, fields="timestamp,c-ip,cs-uri-stem")
    assert (tmp_path / "narrow/fields.txt").read_text() == "timestamp\nc-ip\ncs-uri-stem\n"
    assert narrow.records == summary.records


# -- scenarios ------------------------------------------------------------------------------------------------------

T0 = 1_767_225_600


def test_playback_is_an_hls_player() -> None:
    viewer = Viewer("2001:db8::7", asn=3320, country="DE", user_agent="AppleCoreMedia/1.0 (iPhone)")
    reqs = playback("scenarioSESSION0001", viewer, start=T0, duration=40, segment_seconds=4)
    uris = [r["cs_uri_stem"] for r in reqs]
    assert uris[0].endswith("/ch01-news/master.m3u8") and uris[1].endswith("/ch01-news/720p/index.m3u8")
    segments = [u for u in uris if u.endswith(".ts")]
    assert len(segments) == 10 and segments[0].endswith(f"/seg_{T0 // 4}.ts")
    assert len({u.split("/")[1] for u in uris}) == 1  # one token for the session
    fast = playback("scenarioSESSION0001", viewer, start=T0, duration=40, speed=4, live=False)
    assert sum(r["cs_uri_stem"].endswith(".ts") for r in fast) == 40
    every = playback("scenarioSESSION0001", viewer, start=T0, duration=8, renditions=["1080p", "720p", "360p"])
    assert {u.split("/")[-2] for u in (r["cs_uri_stem"] for r in every) if u.endswith(".ts")} == {"1080p", "720p", "360p"}


def test_records_from_dicts_and_dataframes() -> None:
    viewer = Viewer("198.51.100.7", asn=7922, country="US", user_agent="My Player/1.0 (\"tv\")")
    reqs = playback("scenarioSESSION0002", viewer, start=T0, duration=12)
    reqs.append(request("scenarioSESSION0002", "ch01-news/720p/seg_1.ts", timestamp=T0 + 5,
                        viewer=Viewer("203.0.113.5", 16509, "NL"), sc_status=403))  # fmt: skip
    lines = records(reqs)
    assert records(pd.DataFrame(reqs)) == lines
    fields = [f.split("\t") for f in lines]
    assert all(len(f) == len(DETECTION_FIELDS) for f in fields)
    col = {f.name: i for i, f in enumerate(DETECTION_FIELDS)}
    assert [float(f[col["timestamp"]]) for f in fields] == sorted(float(f[col["timestamp"]]) for f in fields)
    assert fields[0][col["timestamp"]] == f"{T0}.000"
    assert fields[0][col["cs-user-agent"]] == "My%20Player/1.0%20(%22tv%22)"
    assert fields[0][col["cs-referer"]] == "-" and fields[0][col["c-ip-version"]] == "IPv4"
    denied = [f for f in fields if f[col["sc-status"]] == "403"]
    assert len(denied) == 1 and denied[0][col["c-ip"]] == "203.0.113.5" and denied[0][col["asn"]] == "16509"
    assert len(fields[0][col["x-edge-request-id"]]) == 56
    narrow = records(reqs, "timestamp,c-ip,asn")
    assert narrow[0] == f"{T0}.000\t198.51.100.7\t7922"
    assert records(reqs, [FIELDS_BY_NAME["timestamp"], FIELDS_BY_NAME["c-country"]])[0] == f"{T0}.000\tUS"


def test_complete_keeps_given_values_and_tokens_decode() -> None:
    table = complete([{"timestamp": T0, "c_ip": "192.0.2.9", "cs_uri_stem": "/abcdefghijklmnop.x.y.z/a/720p/seg_1.ts",
                       "sc_bytes": 1234, "c_country": "FR"}])  # fmt: skip
    row = table.to_pylist()[0]
    assert row["sc_bytes"] == 1234 and row["x_edge_location"].startswith(("CDG", "MRS"))
    assert row["sc_status"] == 200 and row["cs_method"] == "GET"
    token = session_token("abcdefghijklmnop", iat=T0, exp=T0 + 60)
    payload = token.split(".")[1]
    assert json.loads(base64.urlsafe_b64decode(payload + "=="))["exp"] == T0 + 60
    with pytest.raises(ValueError):
        session_token("short", iat=T0, exp=T0 + 60)
    assert encode_user_agent("a b%20c") == "a%20b%20c"


def test_session_ids_stay_unique_when_the_random_draw_repeats_one() -> None:
    """A repeated draw (two sessions with the same 16-32 characters) is drawn again, never kept twice."""
    class RepeatingFirstDraw:
        def __init__(self) -> None:
            self.real = np.random.default_rng(1)

        def integers(self, low: int, high: int, size: object) -> np.ndarray:
            if size == (2, 32):  # both sessions get the same characters
                row = self.real.integers(low, high, 32)
                return np.stack([row, row])
            if size == 2:
                return np.array([20, 20])
            return self.real.integers(low, high, size)

    first, second = _session_ids(RepeatingFirstDraw(), 2)  # type: ignore[arg-type]
    assert first != second and len(second) == 24
