"""The report for your own logs: what an operator needs on it, a page that holds 10 000 flagged sessions, and the
page in a real browser (Chromium from Debian's packages, installed by .ci/run): a screenshot at 1400 px and no
console error."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from markupsafe import escape

from tests.helpers import ROOT
from tests.tools.browser import needs_chromium, open_page
from tools.generate import generate_corpus
from tools.session_cards import CARDS, PAGE_SIZE
from tools.verdict_report import build_report, render

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("report")
    generate_corpus(root / "corpus", sessions=300, minutes=4, seed=8, mix="audience-v2")  # 3 near misses
    out = root / "verdicts.json"
    done = subprocess.run([sys.executable, "-m", "detection", "detect", "--logs", str(root / "corpus"), "--out",
                           str(out), "--report", str(root / "report.html")], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return {"root": root, "document": json.loads(out.read_text()), "html": (root / "report.html").read_text()}


def test_the_report_has_what_an_operator_reads_first(verdicts: dict[str, Any]) -> None:
    html, document = verdicts["html"], verdicts["document"]
    revoked = [s["session_id"] for s in document["sessions"] if s["action"] == "revoke"]
    assert revoked
    for anchor in ("#run", "#charts", "#sessions", "#undo"):
        assert f'href="{anchor}"' in html
    assert 'id="filter-reason"' in html and 'id="filter-action"' in html
    for session_id in revoked:  # each revoked session with the command that lifts it
        assert f"python -m detection unrevoke {session_id} --ledger" in html
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", html)
    assert not re.search(r"\b1767\d{6}(\.\d+)?\b", html)  # no raw epoch anywhere
    for session in document["sessions"]:  # every user agent (decoded from the log, escaped), shown or folded
        for agent in session["features"].get("user_agents") or []:
            assert str(escape(unquote(agent))) in html
    assert html.count('<img src="data:image/png') == min(len(document["sessions"]), 50)


def test_near_misses_are_the_sessions_one_minute_short_and_never_flagged_ones(verdicts: dict[str, Any],
                                                                               tmp_path: Path) -> None:
    from detection.detect import detect
    from tools.verdict_report import near_misses

    html = verdicts["html"]
    assert 'href="#near"' in html and 'id="near"' in html  # detect --report computes them
    run = detect(verdicts["root"] / "corpus", keep_features=True)
    flagged = {v.session_id for v in run.verdicts}
    misses = near_misses(run.features, flagged)
    assert misses and all(m["session_id"] not in flagged and m["reasons"] for m in misses)
    assert [m["session_id"] for m in misses] == [m["session_id"] for m in sorted(misses, key=lambda m: -m["score"])]
    out = tmp_path / "again.html"  # report --verdicts --logs reads the window again for them
    done = subprocess.run([sys.executable, "-m", "detection", "report", "--verdicts",
                           str(verdicts["root"] / "verdicts.json"), "--logs", str(verdicts["root"] / "corpus"),
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert 'id="near"' in out.read_text() and all(m["session_id"] in out.read_text() for m in misses)


@pytest.fixture(scope="module")
def ten_thousand(verdicts: dict[str, Any]) -> Path:
    one = verdicts["document"]["sessions"][0]
    many = {"sessions": [{**one, "session_id": f"sess_many_{i:08d}", "score": 1 + i % 7} for i in range(10_000)],
            "stats": verdicts["document"]["stats"]}
    page = verdicts["root"] / "many.html"
    page.write_text(render(build_report(many)), encoding="utf-8")
    return page


def test_ten_thousand_flagged_sessions_make_a_page_a_browser_opens(ten_thousand: Path) -> None:
    html = ten_thousand.read_text(encoding="utf-8")
    assert html.count('<section class="session"') == CARDS and html.count('<tr class="row"') == 10_000
    assert html.count('<a href="#s-') == CARDS  # the rows past the cards link nowhere
    assert len(html.encode()) < 20_000_000


@needs_chromium
def test_ten_thousand_sessions_are_paged_and_a_link_turns_to_its_page(ten_thousand: Path, tmp_path: Path) -> None:
    opened = open_page(ten_thousand, tmp_path / "many.png", height=1400)
    assert not opened.console, opened.console
    assert f"10000 of 10000 sessions shown; rows 1 to {PAGE_SIZE}, page 1 of {10_000 // PAGE_SIZE}" in opened.dom
    assert len(re.findall(r'<tr class="row"[^>]* hidden="">', opened.dom)) == 10_000 - PAGE_SIZE  # one page laid out
    assert len(re.findall(r'<section class="session"[^>]* hidden="">', opened.dom)) == CARDS - PAGE_SIZE
    target = re.findall(r'<tr class="row" data-session="([^"]+)"', ten_thousand.read_text())[3 * PAGE_SIZE + 7]
    linked = open_page(ten_thousand, tmp_path / "linked.png", height=1400, fragment=f"s-{target}")
    assert f"rows {3 * PAGE_SIZE + 1} to {4 * PAGE_SIZE}, page 4 of 100" in linked.dom  # a link turns to the row's page
    card = re.search(rf'<section class="session"[^>]* id="s-{target}"[^>]*>\s*<details( open)?', linked.dom)
    assert card and "hidden" not in card.group(0) and card.group(1) == " open"  # shown, and open


@needs_chromium
def test_the_report_in_chromium_at_1400_px_without_a_console_error(verdicts: dict[str, Any]) -> None:
    opened = open_page(verdicts["root"] / "report.html", verdicts["root"] / "report.png")
    assert opened.size == (1400, 2000) and opened.screenshot.stat().st_size > 50_000
    sessions = len(verdicts["document"]["sessions"])
    assert f"{sessions} of {sessions} sessions shown" in opened.dom  # the filter's script ran
    assert not opened.console, opened.console
