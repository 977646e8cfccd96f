"""A real player (ffmpeg) plays a generated HLS stream through `python -m edge serve` with a tokenized master
playlist URL: every request carries the token inherited from the path and is allowed; once the session is
revoked in the store, the next fetch gets 403."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from edge.keys import generate_key
from edge.store import LocalEdgeStore
from tests.edge.helpers import EdgeServer, run_edge

pytestmark = [pytest.mark.e2e, pytest.mark.slow,
              pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is installed by .ci/run")]
SESSION = "hlssession00000001"


def make_hls(origin: Path) -> int:
    """A 6 s, 2-rendition-ready stream: master.m3u8 -> 360p/index.m3u8 -> 1 s segments. Returns segment count."""
    variant = origin / "live" / "ch1" / "360p"
    variant.mkdir(parents=True)
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x180:rate=25", "-f", "lavfi", "-i",
         "sine=frequency=440", "-t", "6", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-c:a", "aac",
         "-f", "hls", "-hls_time", "1", "-hls_playlist_type", "vod",
         "-hls_segment_filename", str(variant / "seg_%03d.ts"), str(variant / "index.m3u8")],
        check=True, timeout=120,
    )
    (origin / "live" / "ch1" / "master.m3u8").write_text(
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=400000,RESOLUTION=320x180\n360p/index.m3u8\n"
    )
    return len(list(variant.glob("seg_*.ts")))


def test_ffmpeg_plays_through_the_edge_and_revocation_stops_it(tmp_path) -> None:
    origin = tmp_path / "origin"
    segments = make_hls(origin)
    assert segments >= 5
    key = generate_key()
    secret = tmp_path / "secret.json"
    secret.write_text(key.to_secret_json())
    store_path = tmp_path / "store.json"
    store = LocalEdgeStore(store_path)
    store.put(key.store_key, key.encoded)

    server = EdgeServer(origin, store_path)
    try:
        signed = run_edge("sign", "--key-file", str(secret), "--session", SESSION, "--path-prefix", "/live/ch1",
                          "--bind-ip", "127.0.0.1", f"{server.base}/live/ch1/master.m3u8")
        assert signed.returncode == 0, signed.stderr
        url = signed.stdout.strip().splitlines()[-1]

        played = subprocess.run(["ffmpeg", "-v", "error", "-i", url, "-map", "0", "-c", "copy", "-f", "null", "-"],
                                capture_output=True, text=True, timeout=120)
        assert played.returncode == 0, played.stderr
        log = server.drain()
        fetched = [line for line in log if ".ts" in line.split(" -> ")[0]]
        assert len(fetched) == segments, log
        assert all(line.split()[2].startswith(f"/{SESSION}.") for line in log), log
        assert all(line.startswith("200 ok ") for line in log), log
        assert any("/live/ch1/360p/index.m3u8" in line for line in log)

        without_token = urllib.request.Request(f"{server.base}/live/ch1/360p/seg_000.ts")
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(without_token, timeout=10)
        assert denied.value.code == 401

        store.put(f"r:{SESSION}", f"{int(time.time()) + 7200}|manual")
        segment_url = url.replace("master.m3u8", "360p/seg_001.ts")
        with pytest.raises(urllib.error.HTTPError) as revoked:
            urllib.request.urlopen(segment_url, timeout=10)
        assert revoked.value.code == 403 and revoked.value.reason == "revoked"
        replay = subprocess.run(["ffmpeg", "-v", "error", "-i", url, "-c", "copy", "-f", "null", "-"],
                                capture_output=True, text=True, timeout=60)
        assert replay.returncode != 0
        assert any(line.startswith("403 revoked") for line in server.drain())
    finally:
        server.stop()
