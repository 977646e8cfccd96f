"""``python -m detection demo``: the whole local pipeline, its edge replay through the real function, its report."""

from __future__ import annotations

import html
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from markupsafe import escape

from detection.workflow.steps import run_local
from edge.binding import Viewer as EdgeViewer
from edge.store import open_store
from revocation.ledger import open_ledger
from tests.helpers import ROOT
from tests.tools.browser import needs_chromium, open_page
from tools.demo import DemoError, corpus_signing_key, run_demo
from tools.report import ReplayRow, ReportData, load_session_requests, render_report, timeline_figure
from tools.scenarios import Viewer, playback, session_token, write_firehose
from tools.session_cards import OPEN_CARDS, TIMELINES, flagged_sessions

T0 = 1_767_225_600
#: Small enough for a test, and a seed whose run revokes no legit viewer (the demo then exits 0).
DEMO_ARGS = ("--sessions", "400", "--seed", "1", "--legit-sample", "50")


def run_cli(out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "detection", "demo", "--out", str(out), *DEMO_ARGS],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess[str], dict]:
    out = tmp_path_factory.mktemp("demo") / "out"
    result = run_cli(out)
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
    return out, result, summary


@pytest.mark.e2e
def test_the_demo_passes_and_prints_its_summary(demo) -> None:
    out, result, summary = demo
    assert result.returncode == 0, result.stdout + result.stderr
    for text in ("pirates planted", "precision / recall", "edge replay: revoked pirates", "edge replay: legit viewers",
                 f"report: {out / 'report.html'}", "demo passed"):  # fmt: skip
        assert text in result.stdout
    for step in range(1, 7):  # the progress: one line per step with its time
        assert re.search(rf"^\[{step}/6\] .+ \d+\.\d\d s", result.stdout, re.M), result.stdout
    assert summary["pirates"] > 0 and summary["revoked"] > 0 and not summary["failures"]


@pytest.mark.e2e
def test_revoked_pirates_are_denied_and_legit_viewers_served_by_the_real_function(demo, edge_runner) -> None:
    out, _, summary = demo
    replays = summary["replays"]
    pirates = [r for r in replays if r["group"] == "pirate"]
    legit = [r for r in replays if r["group"] == "legit"]
    assert {r["session_id"] for r in pirates} == set(summary["revoked_sessions"])
    assert all((r["status"], r["reason"]) == (403, "revoked") for r in pirates)
    assert len(legit) == 50 and all(r["status"] == 200 for r in legit)
    assert summary["replay"] == {"pirate": {"total": len(pirates), "ok": len(pirates)}, "legit": {"total": 50, "ok": 50}}

    # The same requests again, independently of the demo's code: the store it left behind, the real function.
    store = out / "edge-store.json"
    for row, expected in ((pirates[0], (403, "revoked")), (legit[0], (200, "ok"))):
        viewer = EdgeViewer.of(row["ip"], {"user-agent": row["user_agent"], "cloudfront-viewer-country": row["country"]})
        decision = edge_runner.decide(row["uri"], viewer, row["at"], store_path=store)
        assert (decision.status, decision.reason) == expected
    # ...and without the revocation the pirate's token is a valid one: the denial is the revocation's doing.
    key = corpus_signing_key()
    only_key = {"data": [{"key": key.store_key, "value": key.encoded}]}
    decision = edge_runner.decide(pirates[0]["uri"], EdgeViewer(ip=pirates[0]["ip"]), pirates[0]["at"], store=only_key)
    assert decision.status == 200


@pytest.mark.e2e
def test_the_report_names_every_revoked_session_with_its_reasons(demo) -> None:
    out, _, summary = demo
    page = (out / "report.html").read_text(encoding="utf-8")
    assert summary["revoked_sessions"]
    for sid in summary["revoked_sessions"]:
        assert f'id="s-{sid}"' in page
    flagged = summary["flagged_sessions"]
    assert page.count('src="data:image/png;base64,') == min(len(flagged), TIMELINES)  # one timeline each
    assert page.count('<tr class="row"') == len(flagged)
    for sid in summary["revoked_sessions"]:  # the command that lifts it names the demo's own ledger and store
        assert (f"python -m detection unrevoke {sid} --ledger {out / 'ledger.sqlite'} "
                f"--store {out / 'edge-store.json'}") in page
    assert page.count('src="data:image/svg+xml;base64,') == 2  # scores and reasons
    assert page.count("<script") == 1 and 'src="http' not in page  # its own filter alone; nothing to fetch


@pytest.mark.e2e
def test_the_unrevoke_command_the_report_prints_lifts_the_revocation(demo, tmp_path) -> None:
    out, _, summary = demo
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("corpus"))  # the command, on a copy of the demo's state
    sid = summary["revoked_sessions"][0]
    page = (out / "report.html").read_text(encoding="utf-8")
    command = html.unescape(re.search(rf"python -m detection unrevoke {re.escape(sid)} [^<]*", page).group(0))
    command = command.replace(str(out), str(copy))
    done = subprocess.run(["bash", "-c", command.replace("python", shlex.quote(sys.executable), 1)], cwd=ROOT,
                          env={**os.environ, "USER": "operator-on-duty"}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"r:{sid}" not in open_store(copy / "edge-store.json").items("r:")
    assert f"r:{sid}" in open_store(out / "edge-store.json").items("r:")  # the demo's own is untouched


@pytest.mark.e2e
@needs_chromium
def test_the_demo_report_in_chromium_without_a_console_error(demo, tmp_path) -> None:
    out, _, summary = demo
    opened = open_page(out / "report.html", tmp_path / "demo.png", height=1200)
    assert opened.size == (1400, 1200) and not opened.console, opened.console
    assert re.search(r"(\d+) of \1 sessions shown", opened.dom)  # the filter's script ran over every session
    flagged = summary["flagged_sessions"]
    assert opened.dom.count("<details open") == min(len(flagged), OPEN_CARDS)  # the highest scores open, the rest
    if len(flagged) > OPEN_CARDS:  # a link to a folded session (the lowest score: the last row) opens it
        last = re.findall(r'<tr class="row" data-session="([^"]+)"', (out / "report.html").read_text())[-1]
        linked = open_page(out / "report.html", tmp_path / "linked.png", height=1200, fragment=f"s-{last}")
        section = linked.dom.split(f'id="s-{last}"', 1)[1]
        assert section.lstrip().split(">", 1)[1].lstrip().startswith("<details open")


def test_a_second_run_into_the_same_folder_replaces_the_first(demo, tmp_path) -> None:
    out, _, first = demo
    (out / "corpus" / "stray.tsv").write_text("left over\n")
    again = run_cli(out)
    assert again.returncode == 0, again.stdout + again.stderr
    second = json.loads((out / "summary.json").read_text())
    assert second["revoked_sessions"] == first["revoked_sessions"]  # same seed, same verdicts
    assert second["records"] == first["records"]  # the old corpus was removed, not added to
    assert not (out / "corpus" / "stray.tsv").exists()
    revocations = open_store(out / "edge-store.json").items("r:")
    assert sorted(k[2:] for k in revocations) == first["revoked_sessions"]


def test_a_folder_the_demo_did_not_make_is_left_alone(tmp_path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(DemoError, match="not made by python -m detection demo"):
        run_demo(tmp_path, sessions=10)
    assert (tmp_path / "precious.txt").read_text() == "keep me"
    assert run_cli_help().returncode == 0


def run_cli_help() -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "detection", "demo", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)  # fmt: skip


def test_the_store_key_is_the_one_the_generator_signs_with(edge_runner) -> None:
    key = corpus_signing_key()
    sid = "keycheckSession0001"
    token = session_token(sid, iat=T0 - 60, exp=T0 + 3600, paths=["/ch01-news/"])
    store = {"data": [{"key": key.store_key, "value": key.encoded}]}
    decision = edge_runner.decide(f"/{sid}.{token}/ch01-news/720p/seg_1.ts", EdgeViewer(ip="192.0.2.1"), T0, store=store)
    assert (decision.status, decision.reason) == (200, "ok")


# -- the report, on a hand-built scenario with hostile values -------------------------------------------------------

HOSTILE_UA = '<script>alert("ua")</script> $\\frac{1}{0}$ & <b>bold</b>'
PIRATE = "hostileUaSession0001"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A session shared across three countries by a player with a hostile user agent, among ordinary viewers."""
    root = tmp_path_factory.mktemp("hostile")
    reqs: list[dict] = []
    for i in range(4):
        reqs += playback(f"crowdSession000{i:04d}", Viewer(f"100.64.{i}.9"), start=T0 + 5 + i, duration=590)
    for ip, asn, country in (("198.51.100.7", 3320, "DE"), ("203.0.113.9", 3215, "FR"), ("192.0.2.44", 7922, "US")):
        reqs += playback(PIRATE, Viewer(ip, asn=asn, country=country, user_agent=HOSTILE_UA), start=T0 + 30,
                         duration=540)  # fmt: skip
    write_firehose(root / "logs", reqs)
    with open_ledger(root / "ledger.sqlite") as ledger:
        run = run_local(root / "logs", ledger, open_store(root / "store.json"))
    return root, run


def test_the_report_shows_each_reason_and_escapes_what_came_from_the_logs(hostile) -> None:
    root, run = hostile
    verdict = next(v for v in run.score.verdicts if v.session_id == PIRATE)
    data = verdict.to_dict()
    assert data["action"] == "revoke" and len(data["reasons"]) >= 2
    requests = load_session_requests(root / "logs", [PIRATE], window=run.window)
    assert set(requests["session_id"].to_pylist()) == {PIRATE} and requests.num_rows > 100
    timeline, note = timeline_figure(requests, run_at=run.window[1], replay=(run.window[1] + 30, 403, "revoked",
                                                                                "198.51.100.7"))  # fmt: skip
    assert timeline.startswith("data:image/png;base64,") and "one lane per address" in note
    replay = ReplayRow(session_id=PIRATE, group="pirate", kind="token_sharing", revoked=True,
                       uri=requests["cs_uri_stem"][0].as_py(), ip="198.51.100.7", country="DE", user_agent=HOSTILE_UA,
                       at=run.window[1] + 30, status=403, reason="revoked", expected="403 revoked")  # fmt: skip
    flagged = flagged_sessions([data], labels={PIRATE: {"label": "pirate", "kind": "token_sharing"}},
                               revocations={PIRATE: "1767240000|auto"}, replays={PIRATE: replay})
    flagged.cards[0]["timeline"], flagged.cards[0]["timeline_note"] = timeline, note
    page = render_report(ReportData(
        title="test <report>", run={"run_id": run.run_id, "window_start": run.window[0], "window_end": run.window[1],
                                    "window_minutes": 10, "records": 1, "records_skipped": 0, "sessions": 5,
                                    "pirates": 1, "sessions_scored": 5, "flagged": 1, "revoke": 1, "flag": 0,
                                    "monitor": 0, "revoked": 1, "published": 1},
        steps=[{"name": "step <1>", "seconds": 0.5, "note": "n"}],
        evaluation={"precision": 1.0, "recall": 1.0, "false_positive_rate": 0.0, "tp": 1, "fp": 0, "fn": 0,
                    "missed": []},
        flagged=flagged, replays=[replay],
    ))  # fmt: skip

    # the user agent is shown, as text: never as markup
    assert '<script>alert("ua")' not in page and "&lt;script&gt;alert" in page and "<b>bold</b>" not in page
    assert str(escape(HOSTILE_UA)) in page
    assert "test &lt;report&gt;" in page and "step &lt;1&gt;" in page
    # every reason with its detail, values and thresholds
    for reason in data["reasons"]:
        assert f"<code>{reason['code']}</code>" in page
        assert str(escape(reason["detail"])) in page
        for name in [*reason["values"], *reason["thresholds"]]:
            assert f'<span class="muted">{escape(name)}</span>' in page
    assert f"<code>r:{PIRATE}</code> until 2026-01-01T04:00:00Z (auto)" in page  # the store's expiry, as a time
    assert f"python -m detection unrevoke {PIRATE} --ledger" in page
    assert "403 revoked" in page
