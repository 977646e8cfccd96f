"""The README's "What you can do today" block, run as written in a fresh folder: every command exits as the README
says, and what the README shows a command printing is what it prints.

Three things are adapted, each said here: the corpus is 300 sessions instead of 3 000 (the same commands, a tenth of
the time); `'<tokenized URL>'` is the URL the `sign` line printed; `serve` runs until its banner and one request
through it (it serves until stopped), on a free port instead of 8080, from a `media` folder made for it.
"""

from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

README = (ROOT / "README.md").read_text(encoding="utf-8")


def block(heading: str) -> str:
    after = README.split(f"## {heading}\n", 1)[1]
    return after.split("```bash\n", 1)[1].split("\n```", 1)[0]


def commands(text: str) -> list[tuple[str, str | None]]:
    """(command, what the README shows it printing: the `# {...}` line right after it, if any)."""
    joined = text.replace("\\\n", " ")
    found: list[tuple[str, str | None]] = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped.startswith("# {") and found:
            found[-1] = (found[-1][0], stripped[2:])
        elif stripped and not stripped.startswith("#"):
            found.append((stripped, None))
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_readme_block_runs_as_written(tmp_path: Path) -> None:
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    (tmp_path / "media" / "live" / "ch1").mkdir(parents=True)
    (tmp_path / "media" / "live" / "ch1" / "master.m3u8").write_text("#EXTM3U\n")
    steps = commands(block("What you can do today"))
    assert [c.split()[2:4] for c, _ in steps][:3] == [["rotation", "rotate"], ["edge", "sign"], ["edge", "check"]]
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT), "LANG": "C.UTF-8"}
    url = None
    for command, shown in steps:
        command = command.replace("--sessions 3000", "--sessions 300")
        if url is not None:
            command = command.replace("'<tokenized URL>'", shlex.quote(url))
        if " -m edge serve " in command:
            port = free_port()
            served = subprocess.Popen(shlex.split(command.replace("--port 8080", f"--port {port}")), cwd=tmp_path,
                                      env=env, stderr=subprocess.PIPE, text=True)
            try:
                banner = served.stderr.readline()
                assert "serving" in banner, banner
                path = url.split("cdn.example.com", 1)[1]
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
                    assert answer.status == 200 and answer.read() == b"#EXTM3U\n"  # it plays the URL signed above
            finally:
                served.terminate()
                served.wait(timeout=10)
            continue
        done = subprocess.run(shlex.split(command), cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, (command, done.stderr[-2000:])
        if " -m edge sign " in command:
            url = done.stdout.strip().splitlines()[-1]
            assert re.match(r"https://cdn\.example\.com/[\w-]+\.[\w-]+\.[\w-]+\.[\w-]+/live/ch1/master\.m3u8$", url)
        if shown is not None:
            assert json.loads(done.stdout) == json.loads(shown), command
        if command.endswith("--out -"):
            assert set(json.loads(done.stdout)) == {"sessions", "stats"}
    assert (tmp_path / "replay.json").is_file() and (tmp_path / "corpus-parquet" / "fields.txt").is_file()
    run = json.loads((tmp_path / "run.json").read_text(encoding="utf-8"))
    store = json.loads((tmp_path / "store.json").read_text(encoding="utf-8"))
    revoked = {e["key"] for e in store["data"] if e["key"].startswith("r:")}
    assert run["revoked"] > 0 and revoked == {f"r:{v['session_id']}" for v in run["sessions"] if v["action"] == "revoke"}
    created = ["secret.json", "store.json", "corpus/", "corpus-parquet/", "replay.json", "run.json",
               "ledger.sqlite", "media/"]
    ignored = subprocess.run(["git", "check-ignore", *created], cwd=ROOT, capture_output=True, text=True)
    assert ignored.stdout.split() == created  # what the block makes in a checkout, git leaves alone


# -- the other blocks, and the CLI reference -------------------------------------------------------------------------


def make_dry_run(target: str) -> list[str]:
    """The commands ``make <target>`` runs (``make -n``), its prerequisites' included."""
    done = subprocess.run(["make", "-n", "-C", str(ROOT), target], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if line and not line.startswith("make")]


def test_the_first_block_make_demo_runs_the_demo_and_prints_what_the_readme_says(tmp_path: Path) -> None:
    """``make demo``'s own recipe (from ``make -n``), run in a fresh folder: exit 0, the summary the README lists,
    and ``out/demo/report.html``."""
    first = README.split("```bash\n", 1)[1].split("\n```", 1)[0]  # the README's first block
    assert [line.split("#")[0].strip() for line in first.splitlines()] == ["make demo", "make test"]
    recipe = make_dry_run("demo")[-1]
    assert recipe == ".venv/bin/python -m detection demo"
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT), "LANG": "C.UTF-8"}
    done = subprocess.run(shlex.split(recipe), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for shown in ("precision / recall", "edge replay: revoked pirates", "edge replay: legit viewers", "timings",
                  "report: out/demo/report.html", "demo passed"):  # fmt: skip
        assert shown in done.stdout, shown
    assert "1500 sessions x 10 min, seed 2026" in done.stdout  # the defaults the README gives
    assert (tmp_path / "out" / "demo" / "report.html").stat().st_size > 100_000


def test_make_test_runs_pytest_then_node_whatever_pytest_did() -> None:
    recipe = "\n".join(make_dry_run("test"))
    assert "-m pytest || python_status=" in recipe and "node --test tests/js/ || js_status=" in recipe
    assert "test $python_status -eq 0 -a $js_status -eq 0" in recipe


def test_the_deploy_block_names_what_exists() -> None:
    deploy = block("Deploy")
    assert deploy.splitlines()[0].startswith("make deploy")
    assert make_dry_run("deploy")[-2:] == ["bash scripts/sam.sh build", "bash scripts/sam.sh deploy --guided"]
    attach = deploy.split("python -m tools.attach", 1)[1]  # its line, and the comment line under it
    flags = set(re.findall(r"--[a-z][a-z-]*", attach))
    assert flags >= {"--distribution-id", "--function-arn", "--realtime-log-config-arn", "--apply", "--undo"}, attach
    assert flags <= set(re.findall(r"--[a-z][a-z-]*", help_text("tools.attach")))
    assert re.search(r"^  AttachCommand:$", (ROOT / "template.yaml").read_text(), re.M)  # the output it names


def help_text(module: str, *words: str) -> str:
    done = subprocess.run([sys.executable, "-m", module, *words, "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, (module, words, done.stderr)
    return done.stdout


def reference_commands() -> list[tuple[str, tuple[str, ...], set[str]]]:
    """Every command of the README's CLI reference table: (module, subcommand words, the flags it names)."""
    table = README.split("\nCLI reference", 1)[1].split("\n\n", 2)[1]
    found = []
    for row in table.splitlines()[2:]:
        module = None
        for span in re.findall(r"`([^`]+)`", row.split(" | ")[0]):
            words = span.split()
            if words[:2] == ["python", "-m"]:
                module, words = words[2], words[3:]
            assert module is not None, row
            command = tuple(w for w in words[:2] if re.fullmatch(r"[a-z][a-z-]*", w) and not w.startswith("-"))
            command = command[:1] if command[:1] != ("networks",) else command
            found.append((module, command, set(re.findall(r"--[a-z][a-z-]*", span))))
    return found


def test_every_flag_of_the_cli_reference_is_one_the_command_takes() -> None:
    commands = reference_commands()
    assert len(commands) >= 20 and ("detection", ("report",), {"--verdicts", "--out", "--logs", "--ledger", "--store",
                                                               "--config"}) in commands  # fmt: skip
    for module, words, flags in commands:
        accepted = set(re.findall(r"--[a-z][a-z-]*", help_text(module, *words)))
        assert flags <= accepted, (module, words, flags - accepted)
