"""A page opened in headless Chromium (Debian's package; .ci/run installs it): a screenshot, the DOM after its
scripts ran, and the console messages (any is an error for our pages)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

needs_chromium = pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is installed by .ci/run")


@dataclass(frozen=True)
class Opened:
    dom: str
    console: list[str]
    screenshot: Path

    @property
    def size(self) -> tuple[int, int]:
        header = self.screenshot.read_bytes()[16:24]  # PNG IHDR: width, height
        return int.from_bytes(header[:4], "big"), int.from_bytes(header[4:], "big")


def open_page(page: Path, screenshot: Path, *, width: int = 1400, height: int = 2000, fragment: str = "") -> Opened:
    """``page`` (at ``#fragment`` when given) at ``width`` x ``height``."""
    base = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr",
            "--v=0", f"--window-size={width},{height}"]
    address = page.as_uri() + (f"#{fragment}" if fragment else "")
    taken = subprocess.run([*base, f"--screenshot={screenshot}", address], capture_output=True, text=True, timeout=120)
    assert taken.returncode == 0 and screenshot.is_file(), taken.stderr[-2000:]
    dom = subprocess.run([*base, "--dump-dom", address], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [line for line in taken.stderr.splitlines() + dom.stderr.splitlines() if "CONSOLE" in line]
    return Opened(dom.stdout, console, screenshot)
