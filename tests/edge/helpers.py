"""Run `python -m edge ...` as a user would, from the repo root."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.helpers import ROOT


def run_edge(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


class EdgeServer:
    """`python -m edge serve` in a subprocess; its per-request log lines collected from stderr."""

    def __init__(self, origin: Path, store: Path, *extra: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "edge", "serve", "--origin", str(origin), "--store", str(store), "--port", "0",
             *extra],
            cwd=ROOT, stderr=subprocess.PIPE, text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        banner = self.lines.get(timeout=30)
        assert "serving" in banner, banner
        self.base = banner.rsplit(" ", 1)[1].rstrip("/")

    def _pump(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line.rstrip("\n"))

    def drain(self) -> list[str]:
        time.sleep(0.2)
        out = []
        while not self.lines.empty():
            out.append(self.lines.get())
        return out

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
