"""A realistic, labelled corpus of CloudFront real-time logs for HLS playback sessions, legit and pirated.

``generate_corpus(out_dir, sessions, minutes, seed)`` writes, in the real-time log input contract:

- ``YYYY/MM/DD/HH/cf-realtime-logs-1-YYYY-MM-DD-HH-MM-SS-<uuid>.gz``: gzip TSV objects the way Firehose delivers them
  (one object per 60 s buffer or 128 MiB, in the hour folder of the arrival time of its oldest record; records in
  arrival order, arriving 0.5-4 s after the request);
- ``fields.txt``: the field list (default ``DETECTION_FIELDS``);
- ``labels.csv`` and ``labels.parquet``: one row per session: ``session_id, label (legit|pirate), kind``, and the
  ground truth taken from the records written: the IPs, ASNs and countries of its served (2xx) requests, channels,
  streams (players), requests, first/last timestamp, token expiry;
- ``corpus.json``: the ``CorpusSummary``.

Sessions follow the URL/token contract (``/<sid>.<jwt>/<channel>/<rendition>/seg_<n>.ts``, a signed HS256 JWT per
session with ``sid``, ``iat``, ``exp``, ``paths``). Each session is one or more players ("streams"); a player fetches
the master and variant playlists, then segments (2, 4 or 6 s) with a startup burst, a variant playlist refresh per
segment for live, ABR rendition switches, occasional 404/403/5xx, byte ranges (206) on some VOD players; the
players that implement CMCD (``CMCD_DEVICES``) send their own session id, the content id, buffer and throughput. The kinds
(``KINDS``) model what legit viewers do that looks odd (mobile handover, dual stack, CGNAT, Wi-Fi to LTE, app plus
player library, pause and resume, casting, privacy relays, corporate proxies, forged requests the edge denied) and
what pirates do (token sharing, two homes, restreamers, slow leaks, resale with impossible travel or rotating
residential proxies, several channels at once). About 3 % of sessions are pirates.

Everything per request is vectorised (numpy, pyarrow); Python loops run per session and per output file only.
Deterministic given the seed (and the same output whatever ``workers`` is).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from detection.logs.schema import DETECTION_FIELDS, Field, fields_text, parse_fields
from tools.audience import AUDIENCE_KINDS, AUDIENCE_SHARES, AudienceBehaviours, Kind
from tools.scenarios import (
    _REQUEST_ID_ALPHABET,
    DEFAULT_HOST,
    RENDITIONS,
    _edge_for,
    _fixed3,
    _request_ids,
    encode_user_agent,
    firehose_key,
    session_token,
    tsv_lines,
)

__all__ = [
    "CORPORATE_ASNS",
    "DEFAULT_START_EPOCH",
    "HOSTING_ASNS",
    "KINDS",
    "LEGIT_KINDS",
    "PIRATE_KINDS",
    "RELAY_ASNS",
    "CorpusSummary",
    "Kind",
    "generate_corpus",
]

DEFAULT_START_EPOCH = 1_767_225_600  # 2026-01-01T00:00:00Z


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("plain", "legit", 0.0, "one player, one address"),  # share: whatever the others leave
        Kind("mobile_handover", "legit", 0.06, "phone on a mobile carrier: addresses change one after another, one ASN"),
        Kind("dual_stack", "legit", 0.06, "one IPv4 and one IPv6 address of the same ASN, alternating within minutes"),
        Kind("cgnat", "legit", 0.06, "mobile viewer behind carrier-grade NAT: the address is shared with other sessions"),
        Kind("wifi_lte", "legit", 0.03, "home Wi-Fi, then LTE: two ASNs one after the other, one country"),
        Kind("app_player", "legit", 0.06, "an app fetches playlists, its player library the segments: two user agents"),
        Kind("pause_resume", "legit", 0.04, "playback paused for minutes, then resumed (sometimes on a new address)"),
        Kind("casting", "legit", 0.02, "starts on a phone, cast to a TV at home: two devices, one home, brief overlap"),
        Kind("privacy_relay", "legit", 0.03, "iCloud-Private-Relay-like egress: 2-4 relay addresses and ASNs, one country"),
        Kind("corporate_proxy", "legit", 0.02, "corporate egress proxy: requests spread over 2-4 egress addresses"),
        Kind("forged_requests", "legit", 0.01, "a normal viewer whose session id others sent requests with (all 403)"),
        Kind("token_sharing", "pirate", 0.005, "one session played at once from many IPs, ASNs and countries"),
        Kind("two_homes", "pirate", 0.005, "one session played quietly from two homes in two countries at once"),
        Kind("restreamer", "pirate", 0.005, "one IP (usually hosting) fetching every rendition or faster than real time"),
        Kind("slow_leak", "pirate", 0.005, "3-4 concurrent players on addresses in 2-3 ASNs"),
        Kind("resale_travel", "pirate", 0.003, "resold session used in turn in distant countries: impossible travel"),
        Kind("resale_proxy", "pirate", 0.0035, "one player behind rotating residential proxies: many IPs, ASNs"),
        Kind("multi_channel", "pirate", 0.0035, "one session playing different channels at once in several places"),
        *AUDIENCE_KINDS,
    )
}
#: The kinds of a corpus and their shares. ``generator-v1``: the kinds written together with the policy (frozen, so
#: that its numbers can be re-measured); ``audience-v2``: those plus the behaviours of tools/audience.py, written
#: from how networks, players and their specifications document themselves.
DEFAULT_MIX = "generator-v1"
MIXES: dict[str, dict[str, float]] = {
    DEFAULT_MIX: {k.name: k.share for k in KINDS.values() if k.name not in AUDIENCE_SHARES},
}
MIXES["audience-v2"] = {**MIXES[DEFAULT_MIX], **AUDIENCE_SHARES}
LEGIT_KINDS = tuple(k for k, v in KINDS.items() if v.label == "legit")
PIRATE_KINDS = tuple(k for k, v in KINDS.items() if v.label == "pirate")

# -- the world: networks, addresses, devices, content ---------------------------------------------------------------

# country -> (residential ASNs, mobile ASNs)
_ACCESS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "DE": ((3320, 3209, 6805, 8881, 31334), (3320, 3209, 6805)),
    "US": ((7922, 7018, 701, 20115, 22773, 209), (21928, 6167, 20057)),
    "GB": ((2856, 5089, 5607), (12576, 25135, 206067)),
    "FR": ((3215, 12322, 15557, 5410), (3215, 51207, 5410)),
    "ES": ((3352, 12479, 12430), (3352, 12479)),
    "IT": ((3269, 30722, 12874), (30722, 24608)),
    "NL": ((1136, 33915), (1136, 50266)),
    "AT": ((8447, 8412), (8447, 25255)),
    "CH": ((3303, 6730), (3303,)),
    "PL": ((5617, 6830), (12912,)),
    "CA": ((812, 577), (812,)),
    "BR": ((28573, 18881), (26615, 26599)),
    "MX": ((8151,), (28403,)),
    "JP": ((2516, 4713), (2516,)),
    "IN": ((24560,), (55836, 45609)),
    "SG": ((9506,), (9506,)),
    "TR": ((9121,), (9121,)),
    "VN": ((7552,), (7552,)),
    "ID": ((7713,), (7713,)),
    "AU": ((1221,), (1221,)),
}
#: Hosting / cloud ASNs (restreamers' usual home) with a country their servers sit in.
HOSTING_ASNS: dict[int, tuple[str, ...]] = {
    16509: ("US", "DE", "SG"),  # Amazon
    14061: ("US", "NL", "DE", "SG"),  # DigitalOcean
    24940: ("DE",),  # Hetzner
    16276: ("FR",),  # OVH
    63949: ("US",),  # Linode
    20473: ("US", "JP"),  # Vultr
    9009: ("GB", "NL"),  # M247
    60781: ("NL",),  # LeaseWeb
    396982: ("US",),  # Google Cloud
    8075: ("US",),  # Microsoft
}
#: Privacy relay egress ASNs (iCloud Private Relay partners): egress addresses geolocate to the user's country.
RELAY_ASNS: tuple[int, ...] = (36183, 13335, 54113)
#: Corporate egress proxies (cloud security proxies and a company's own network).
CORPORATE_ASNS: tuple[int, ...] = (53813, 62044, 64496)

_MARKET = {"DE": 0.34, "US": 0.2, "GB": 0.1, "FR": 0.08, "ES": 0.05, "IT": 0.05, "NL": 0.04, "AT": 0.03,
           "CH": 0.02, "PL": 0.03, "CA": 0.02, "BR": 0.01, "MX": 0.01, "JP": 0.01, "AU": 0.01}  # fmt: skip
_FAR = ("US", "BR", "JP", "IN", "SG", "AU", "MX", "VN", "ID", "TR", "DE", "GB", "CA")
_NEAR = {"DE": ("AT", "CH", "NL", "PL", "FR"), "US": ("CA", "MX"), "GB": ("FR", "NL"), "FR": ("ES", "DE", "IT"),
         "ES": ("FR", "IT"), "IT": ("FR", "AT", "CH"), "NL": ("DE", "GB")}  # fmt: skip
_MARKET_NAMES = list(_MARKET)
_MARKET_WEIGHTS = np.array([_MARKET[c] for c in _MARKET_NAMES])
_MARKET_SHARES = _MARKET_WEIGHTS / _MARKET_WEIGHTS.sum()

# device -> (user agents, top rendition index, bandwidth range bytes/s, referer)
_UA = {
    "desktop": [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.{m} Safari/605.1.15",
        "Mozilla/5.0 (X11; Linux x86_64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36 Edg/{v}.0.0.0",
    ],
    "ios_app": ["ExampleTV/5.{m}.0 (iPhone; iOS 17.{m}; Scale/3.00)", "ExampleTV/5.{m}.0 (iPad; iOS 17.{m}; Scale/2.00)"],
    "ios_player": ["AppleCoreMedia/1.0.0.21E{b} (iPhone; U; CPU OS 17_{m} like Mac OS X; en_us)"],
    "android_app": ["ExampleTV/5.{m}.0 (Linux; Android 14; Pixel {m})", "ExampleTV/5.{m}.0 (Linux; Android 13; SM-S91{m}B)"],
    "android_player": ["ExampleTV/5.{m}.0 (Linux;Android 14) ExoPlayerLib/2.19.{m}"],
    "tv": [
        "Mozilla/5.0 (SMART-TV; Linux; Tizen 7.0) AppleWebKit/537.36 (KHTML, like Gecko) 94.0.4606.31/7.0 TV Safari/537.36",
        "Mozilla/5.0 (Web0S; Linux/SmartTV) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36 WebAppManager",
        "Roku/DVP-12.{m} (12.{m}.0.4178-46)",
        "AppleTV14,1/17.{m}",
    ],
    "cast": ["Mozilla/5.0 (X11; Linux aarch64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36 CrKey/1.56.500000"],
    "tool": ["Lavf/60.{m}.100", "Lavf/58.{m}.100", "VLC/3.0.{m} LibVLC/3.0.{m}", "curl/8.{m}.0", "python-requests/2.3{m}.0",
             "Go-http-client/1.1", "Streamlink/6.{m}.0"],
}  # fmt: skip
_DEVICE = {  # top rendition index (0 = 1080p), bandwidth bytes/s
    "desktop": (0, (2e6, 12e6)),
    "ios_app": (1, (0.8e6, 5e6)),
    "android_app": (1, (0.8e6, 5e6)),
    "tv": (0, (2.5e6, 12e6)),
    "cast": (0, (2.5e6, 10e6)),
    "tool": (0, (20e6, 80e6)),
}
#: Players that send Common Media Client Data (CTA-5004) when the operator turns it on: the web players (hls.js,
#: dash.js and Shaka all implement it), Android's Media3/ExoPlayer and Shaka on TVs and cast receivers. The iOS apps
#: (AVPlayer) and the tools send none. Each player instance sends its own session id (``sid``).
CMCD_DEVICES = frozenset({"desktop", "android_app", "tv", "cast"})
_LADDER = list(RENDITIONS)  # 1080p .. 240p
_KBPS = np.array([RENDITIONS[r] for r in _LADDER], dtype=np.float64)

_LIVE = [("ch01-news", 4), ("ch02-sports", 2), ("ch03-movies", 6), ("ch04-kids", 6), ("ch05-music", 4),
         ("ch06-docs", 6), ("ch07-sports2", 2), ("ch08-series", 4), ("ch09-local", 6), ("ch10-events", 2),
         ("ch11-weather", 6), ("ch12-shop", 6)]  # fmt: skip
_N_VOD = 160

# request kinds
_MASTER, _VARIANT, _SEGMENT, _FORGED = 0, 1, 2, 3


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a fast deterministic hash of uint64 values."""
    z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


class _World:
    """Addresses, user agents and content, allocated as sessions ask for them (deterministic)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.ip: list[str] = []
        self.ip_asn: list[int] = []
        self.ip_country: list[str] = []
        self.ip_v6: list[bool] = []
        self.ip_edge: list[str] = []
        self._seen: set[str] = set()
        self.ua: list[str] = []
        self._ua_index: dict[str, int] = {}
        self.cgnat: dict[tuple[int, str], list[int]] = {}
        self.contents: list[tuple[str, float, bool]] = [(name, float(sd), True) for name, sd in _LIVE]
        for i in range(_N_VOD):
            self.contents.append((f"vod-{1000 + i * 7}", 6.0 if i % 4 else 4.0, False))
        weights = 1.0 / np.arange(1, len(_LIVE) + 1) ** 0.9
        self.live_weights = weights / weights.sum()

    # addresses ------------------------------------------------------------------------------------------------

    def _prefixes(self, asn: int) -> tuple[list[tuple[int, int]], tuple[int, int]]:
        h = hashlib.sha256(str(asn).encode()).digest()
        v4 = []
        for i in range(4):
            first = 2 + h[i] % 220
            if first in (10, 100, 127, 169, 172, 192, 198, 203):
                first += 1
            v4.append((first, h[4 + i]))
        v6 = (0x2A00 + h[8] % 0x10, (h[9] << 8) | h[10])
        return v4, v6

    def address(self, asn: int, country: str, v6: bool = False, near: int | None = None) -> int:
        """A new address of ``asn`` located in ``country``; ``near``: in the same /24 (v4) or /48 (v6) as that one."""
        rng = self.rng
        v4_prefixes, (p1, p2) = self._prefixes(asn)
        while True:
            if near is not None:
                base = self.ip[near]
                if ":" in base:
                    head = ":".join(base.split(":")[:3])
                    text = f"{head}:{rng.integers(0, 65536):x}::{rng.integers(1, 65536):x}"
                else:
                    head = base.rsplit(".", 1)[0]
                    text = f"{head}.{rng.integers(1, 255)}"
            elif v6:
                h = rng.integers(0, 65536, size=6)
                text = f"{p1:x}:{p2:x}:{h[0]:x}:{h[1]:x}:{h[2]:x}:{h[3]:x}:{h[4]:x}:{h[5]:x}"
            else:
                a, b = v4_prefixes[int(rng.integers(0, len(v4_prefixes)))]
                text = f"{a}.{b}.{rng.integers(0, 256)}.{rng.integers(1, 255)}"
            if text not in self._seen:
                break
        self._seen.add(text)
        self.ip.append(text)
        self.ip_asn.append(asn)
        self.ip_country.append(country)
        self.ip_v6.append(":" in text)
        self.ip_edge.append(_edge_for(country, text))
        return len(self.ip) - 1

    def cgnat_address(self, asn: int, country: str, pool: int) -> int:
        """An address of ``asn``'s NAT pool in ``country``, shared with the other sessions there."""
        shared = self.cgnat.setdefault((asn, country), [])
        if len(shared) < pool:
            shared.append(self.address(asn, country))
            return shared[-1]
        return shared[int(self.rng.integers(0, len(shared)))]

    # choices --------------------------------------------------------------------------------------------------

    def country(self, pool: Sequence[str] | None = None) -> str:
        if pool is not None:
            return str(pool[int(self.rng.integers(0, len(pool)))])
        return _MARKET_NAMES[int(self.rng.choice(len(_MARKET_NAMES), p=_MARKET_SHARES))]

    def asn(self, country: str, mobile: bool = False) -> int:
        residential, mobiles = _ACCESS[country]
        pool = mobiles if mobile else residential
        return int(pool[int(self.rng.integers(0, len(pool)))])

    def hosting(self) -> tuple[int, str]:
        asns = list(HOSTING_ASNS)
        asn = asns[int(self.rng.integers(0, len(asns)))]
        return asn, self.country(HOSTING_ASNS[asn])

    def user_agent(self, device: str) -> int:
        templates = _UA[device]
        template = templates[int(self.rng.integers(0, len(templates)))]
        text = template.format(v=int(self.rng.integers(118, 126)), m=int(self.rng.integers(1, 7)),
                               b=int(self.rng.integers(200, 260)))  # fmt: skip
        if text not in self._ua_index:
            self._ua_index[text] = len(self.ua)
            self.ua.append(text)
        return self._ua_index[text]

    def live(self) -> int:
        return int(self.rng.choice(len(_LIVE), p=self.live_weights))

    def vod(self) -> int:
        return len(_LIVE) + int(self.rng.integers(0, _N_VOD))


class _Streams:
    """Column store of players ("streams"); one row per player of a session."""

    COLUMNS = ("session", "t0", "t1", "content", "top", "rend0", "bw", "ua_a", "ua_b", "ua_alt", "mode", "block",
               "speed", "all_rend", "pause0", "pause1", "ranges", "master", "vod_offset", "abr", "browser",
               "cmcd", "rate")  # fmt: skip

    def __init__(self) -> None:
        self.cols: dict[str, list[Any]] = {c: [] for c in self.COLUMNS}
        self.slots: list[list[int]] = []
        self.cuts: list[list[float]] = []

    def add(self, slots: list[int], cuts: list[float] | None = None, **values: Any) -> None:
        for c in self.COLUMNS:
            self.cols[c].append(values[c])
        self.slots.append(slots)
        self.cuts.append(sorted(cuts or []))

    def __len__(self) -> int:
        return len(self.slots)


class _Builder(AudienceBehaviours):
    """Turns sessions of each kind into players (the audience kinds: :class:`tools.audience.AudienceBehaviours`)."""

    def __init__(self, world: _World, streams: _Streams, rng: np.random.Generator, span: tuple[float, float]) -> None:
        self.w = world
        self.s = streams
        self.rng = rng
        self.span = span

    def player(
        self,
        session: int,
        t0: float,
        t1: float,
        content: int,
        slots: list[int],
        device: str,
        *,
        cuts: list[float] | None = None,
        mode: int = 0,
        block: int = 4,
        ua: int | None = None,
        ua_b: int | None = None,
        speed: float = 1.0,
        all_rend: bool = False,
        pause: tuple[float, float] | None = None,
        ranges: bool = False,
        bandwidth: float | None = None,
        rendition: int | None = None,
        abr: float | None = None,
        cmcd: bool | None = None,
        rate: float = 1.0,
    ) -> None:
        """One player. ``bandwidth`` (bytes/s), ``rendition`` (starting rung), ``abr`` (switch probability per
        segment) and ``cmcd`` override what the device would do; ``rate`` is the playback rate the viewer chose
        (a CMCD player reports it as ``pr``)."""
        rng = self.rng
        start, end = self.span
        master = t0 >= start
        t0, t1 = max(t0, start), min(t1, end)
        if t1 - t0 < 20:
            t1 = min(end, t0 + 20)
            t0 = t1 - 20
        top, (lo, hi) = _DEVICE[device]
        ua_a = self.w.user_agent(device) if ua is None else ua
        self.s.add(
            slots,
            cuts,
            session=session,
            t0=t0,
            t1=t1,
            content=content,
            top=top,
            rend0=min(len(_LADDER) - 1, top + int(rng.integers(0, 2))) if rendition is None else rendition,
            bw=float(rng.uniform(lo, hi)) if bandwidth is None else bandwidth,
            ua_a=ua_a,
            ua_b=ua_a if ua_b is None else ua_b,
            ua_alt=ua_b is not None,
            mode=mode,
            block=block,
            speed=speed,
            all_rend=all_rend,
            pause0=pause[0] if pause else np.nan,
            pause1=pause[1] if pause else np.nan,
            ranges=ranges,
            master=master,
            vod_offset=0 if master else int(rng.integers(0, 600)),
            abr=(0.05 if device in ("ios_app", "android_app") else 0.015) if abr is None else abr,
            browser=device == "desktop",
            cmcd=device in CMCD_DEVICES if cmcd is None else cmcd,
            rate=rate,
        )

    # helpers ----------------------------------------------------------------------------------------------------

    def times(self, minimum: float) -> tuple[float, float]:
        """A session's playing interval, clipped to the corpus span, at least ``minimum`` seconds inside it."""
        start, end = self.span
        length = end - start
        minimum = min(minimum, length)
        duration = max(minimum, float(self.rng.lognormal(np.log(max(60.0, 0.7 * length)), 0.6)))
        t0 = start + float(self.rng.uniform(-0.4, 1.0)) * length - duration * 0.3
        t0 = min(max(t0, start - duration + minimum), end - minimum)
        t1 = t0 + duration
        return t0, t1

    def home(self, country: str | None = None, mobile: bool = False) -> tuple[str, int, int]:
        country = country or self.w.country()
        asn = self.w.asn(country, mobile)
        return country, asn, self.w.address(asn, country)

    def content(self, live_share: float = 0.7) -> int:
        return self.w.live() if self.rng.random() < live_share else self.w.vod()

    def device(self, mobile: bool = False) -> str:
        if mobile:
            return "ios_app" if self.rng.random() < 0.5 else "android_app"
        return str(self.rng.choice(["desktop", "tv", "ios_app", "android_app", "cast"], p=[0.4, 0.3, 0.12, 0.12, 0.06]))

    def app_pair(self, device: str) -> tuple[int, int]:
        player = "ios_player" if device == "ios_app" else "android_player"
        return self.w.user_agent(device), self.w.user_agent(player)

    # kinds --------------------------------------------------------------------------------------------------------

    def build(self, session: int, kind: str) -> None:
        getattr(self, f"k_{kind}")(session)

    def k_plain(self, s: int) -> None:
        mobile = self.rng.random() < 0.2
        country, _, ip = self.home(mobile=mobile)
        t0, t1 = self.times(45)
        content = self.content()
        device = self.device(mobile)
        ranges = not self.w.contents[content][2] and self.rng.random() < 0.3
        self.player(s, t0, t1, content, [ip], device, ranges=ranges)

    def k_mobile_handover(self, s: int) -> None:
        country, asn, ip = self.home(mobile=True)
        slots = [ip] + [self.w.address(asn, country, v6=self.rng.random() < 0.2) for _ in range(int(self.rng.integers(1, 5)))]
        t0, t1 = self.times(180)
        cuts = list(self.rng.uniform(0.1, 0.95, len(slots) - 1))
        self.player(s, t0, t1, self.content(), slots, self.device(True), cuts=cuts)

    def k_dual_stack(self, s: int) -> None:
        country, asn, ip4 = self.home()
        ip6 = self.w.address(asn, country, v6=True)
        t0, t1 = self.times(120)
        self.player(s, t0, t1, self.content(), [ip4, ip6], self.device(), mode=1, block=int(self.rng.integers(2, 8)))

    def k_cgnat(self, s: int) -> None:
        country = self.w.country()
        asn = self.w.asn(country, mobile=True)
        ip = self.w.cgnat_address(asn, country, pool=3)
        t0, t1 = self.times(60)
        self.player(s, t0, t1, self.content(), [ip], self.device(True))

    def k_wifi_lte(self, s: int) -> None:
        country = self.w.country()
        while not set(_ACCESS[country][1]) - {_ACCESS[country][0][0]} or len(set(sum(_ACCESS[country], ()))) < 2:
            country = self.w.country()
        country, asn, home = self.home(country)
        mobile_asn = self.w.asn(country, mobile=True)
        if mobile_asn == asn:
            mobile_asn = next(a for a in _ACCESS[country][1] + _ACCESS[country][0] if a != asn)
        lte = self.w.address(mobile_asn, country)
        t0, t1 = self.times(150)
        self.player(s, t0, t1, self.content(), [home, lte], self.device(True), cuts=[float(self.rng.uniform(0.2, 0.8))])

    def k_app_player(self, s: int) -> None:
        country, asn, ip = self.home(mobile=self.rng.random() < 0.3)
        device = "ios_app" if self.rng.random() < 0.6 else "android_app"
        app, lib = self.app_pair(device)
        t0, t1 = self.times(60)
        self.player(s, t0, t1, self.content(), [ip], device, ua=app, ua_b=lib)

    def k_pause_resume(self, s: int) -> None:
        country, asn, ip = self.home()
        slots = [ip]
        cuts = None
        t0, t1 = self.times(240)
        length = t1 - max(t0, self.span[0])
        p0 = float(self.rng.uniform(0.15, 0.5)) * length
        p1 = p0 + min(float(self.rng.uniform(60, 420)), 0.4 * length)
        if self.rng.random() < 0.3:  # came back on a new address of the same provider
            slots.append(self.w.address(asn, country))
            cuts = [(p1 + 1) / length]
        content = self.w.vod() if self.rng.random() < 0.6 else self.w.live()
        self.player(s, t0, t1, content, slots, self.device(), cuts=cuts, pause=(p0, p1))

    def k_casting(self, s: int) -> None:
        country, asn, ip = self.home()
        tv_ip = ip if self.rng.random() < 0.6 else self.w.address(asn, country, v6=True)
        t0, t1 = self.times(180)
        tc = t0 + float(self.rng.uniform(0.2, 0.6)) * (t1 - t0)
        content = self.content()
        phone = "ios_app" if self.rng.random() < 0.5 else "android_app"
        self.player(s, t0, tc + float(self.rng.uniform(3, 20)), content, [ip], phone)
        self.player(s, tc, t1, content, [tv_ip], "cast" if self.rng.random() < 0.6 else "tv")

    def k_privacy_relay(self, s: int) -> None:
        country = self.w.country()
        relays = [RELAY_ASNS[int(i)] for i in self.rng.integers(0, len(RELAY_ASNS), int(self.rng.integers(1, 3)))]
        n = int(self.rng.integers(2, 5))
        slots = [self.w.address(relays[i % len(relays)], country, v6=self.rng.random() < 0.5) for i in range(n)]
        t0, t1 = self.times(120)
        device = "desktop" if self.rng.random() < 0.5 else "ios_app"
        self.player(s, t0, t1, self.content(), slots, device, mode=1, block=int(self.rng.integers(2, 10)))

    def k_corporate_proxy(self, s: int) -> None:
        country = self.w.country()
        asn = CORPORATE_ASNS[int(self.rng.integers(0, len(CORPORATE_ASNS)))]
        first = self.w.address(asn, country)
        slots = [first] + [self.w.address(asn, country, near=first) for _ in range(int(self.rng.integers(1, 4)))]
        t0, t1 = self.times(90)
        self.player(s, t0, t1, self.content(), slots, "desktop", mode=2)

    def k_forged_requests(self, s: int) -> None:
        self.k_plain(s)  # the forged requests are added per request later (status 403)

    def k_token_sharing(self, s: int) -> None:
        t0, t1 = self.times(300)
        content = self.w.live() if self.rng.random() < 0.8 else self.w.vod()
        for _ in range(int(self.rng.integers(5, 26))):
            country = self.w.country(_FAR if self.rng.random() < 0.6 else None)
            mobile = self.rng.random() < 0.3
            asn = self.w.asn(country, mobile)
            a = t0 + float(self.rng.uniform(0, 0.3)) * (t1 - t0)
            b = t1 - float(self.rng.uniform(0, 0.3)) * (t1 - t0)
            self.player(s, a, b, content, [self.w.address(asn, country)], self.device(mobile))

    def k_two_homes(self, s: int) -> None:
        c1 = self.w.country()
        c2 = self.w.country(_NEAR.get(c1, _FAR))
        if c2 == c1:
            c2 = "ES" if c1 != "ES" else "FR"
        t0, t1 = self.times(300)
        content = self.content()
        for country in (c1, c2):
            _, _, ip = self.home(country)
            a = t0 + float(self.rng.uniform(0, 0.2)) * (t1 - t0)
            b = t1 - float(self.rng.uniform(0, 0.2)) * (t1 - t0)
            self.player(s, a, b, content, [ip], self.device())

    def k_restreamer(self, s: int) -> None:
        if self.rng.random() < 0.7:
            asn, country = self.w.hosting()
        else:
            country = self.w.country()
            asn = self.w.asn(country)
        ip = self.w.address(asn, country)
        t0, t1 = self.times(300)
        tool = "tool" if self.rng.random() < 0.6 else "desktop"
        if self.rng.random() < 0.6:  # live: every rendition, in real time
            self.player(s, t0, t1, self.w.live(), [ip], tool, all_rend=True)
        else:  # VOD: faster than real time (and sometimes every rendition too)
            self.player(s, t0, t1, self.w.vod(), [ip], tool, speed=float(self.rng.uniform(3, 10)),
                        all_rend=self.rng.random() < 0.3)  # fmt: skip

    def k_slow_leak(self, s: int) -> None:
        country = self.w.country()
        asns = list({self.w.asn(country, self.rng.random() < 0.4) for _ in range(3)})
        while len(asns) < 2:
            asns.append(self.w.asn(self.w.country(_NEAR.get(country, _FAR))))
        t0, t1 = self.times(300)
        content = self.content()
        for i in range(int(self.rng.integers(3, 5))):
            asn = asns[i % len(asns)]
            a = t0 + float(self.rng.uniform(0, 0.15)) * (t1 - t0)
            self.player(s, a, t1, content, [self.w.address(asn, country)], self.device())

    def k_resale_travel(self, s: int) -> None:
        t0, t1 = self.times(300)
        legs = int(self.rng.integers(3, 6))
        countries: list[str] = []
        while len(countries) < legs:
            c = self.w.country(_FAR)
            if not countries or c != countries[-1]:
                countries.append(c)
        content = self.content(0.5)
        edges = np.linspace(t0, t1, legs + 1)
        for i, country in enumerate(countries):
            gap = float(self.rng.uniform(5, 60)) if i else 0.0
            _, _, ip = self.home(country, mobile=self.rng.random() < 0.3)
            self.player(s, edges[i] + gap, edges[i + 1], content, [ip], self.device())

    def k_resale_proxy(self, s: int) -> None:
        countries = [self.w.country() for _ in range(int(self.rng.integers(1, 4)))]
        slots = []
        for _ in range(int(self.rng.integers(8, 31))):
            country = countries[int(self.rng.integers(0, len(countries)))]
            slots.append(self.w.address(self.w.asn(country, self.rng.random() < 0.3), country))
        t0, t1 = self.times(300)
        mode = 2 if self.rng.random() < 0.5 else 1
        self.player(s, t0, t1, self.content(), slots, self.device(), mode=mode, block=int(self.rng.integers(1, 4)))

    def k_multi_channel(self, s: int) -> None:
        t0, t1 = self.times(300)
        picks = self.rng.choice(len(_LIVE), size=int(self.rng.integers(2, 5)), replace=False)
        for ch in picks:
            country = self.w.country(_FAR if self.rng.random() < 0.5 else None)
            _, _, ip = self.home(country)
            a = t0 + float(self.rng.uniform(0, 0.2)) * (t1 - t0)
            self.player(s, a, t1, int(ch), [ip], self.device())


# -- requests -------------------------------------------------------------------------------------------------------


def _within(counts: np.ndarray) -> np.ndarray:
    """For each group of ``counts`` consecutive items, 0..count-1."""
    total = int(counts.sum())
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return np.arange(total, dtype=np.int64) - starts


def _per_stream(streams: _Streams, world: _World) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Each player's columns as arrays, and its content's segment duration (seconds) and whether it is live."""
    c = {k: np.asarray(v) for k, v in streams.cols.items()}
    seg = np.array([world.contents[i][1] for i in c["content"]], dtype=np.float64)
    live = np.array([world.contents[i][2] for i in c["content"]], dtype=bool)
    return c, seg, live


def _requests(
    streams: _Streams, c: dict[str, np.ndarray], seg: np.ndarray, live: np.ndarray, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Every request of every player, as arrays (vectorised); ``c``, ``seg``, ``live``: :func:`_per_stream`."""
    n_streams = len(streams)
    speed = c["speed"].astype(np.float64)
    step = seg / speed
    pause_len = np.nan_to_num(c["pause1"] - c["pause0"], nan=0.0)
    burst = np.where(c["master"], np.where(live, 3, 5), 0)  # startup: segments fetched back to back
    playing = np.maximum(c["t1"] - c["t0"] - pause_len - 0.3, 0)
    n_seg = np.maximum(1, np.floor(playing / step).astype(np.int64) + burst)

    # segment level
    sid = np.repeat(np.arange(n_streams), n_seg)
    k = _within(n_seg)
    t = c["t0"][sid] + 0.3 + np.maximum(k * 0.6, (k - burst[sid]) * step[sid])
    t += rng.uniform(0, 0.25, len(t))
    paused = ~np.isnan(c["pause0"][sid]) & (t - c["t0"][sid] >= c["pause0"][sid])
    t = np.where(paused, t + pause_len[sid], t)
    keep = t < c["t1"][sid] + step[sid]
    sid, k, t = sid[keep], k[keep], t[keep]
    # ABR: a bounded-ish random walk per player
    moves = rng.random(len(k))
    p = c["abr"][sid]
    delta = np.where(moves < p, -1, np.where(moves > 1 - p, 1, 0))
    first = np.r_[True, sid[1:] != sid[:-1]]
    cum = np.cumsum(delta)
    cum -= np.repeat(cum[first] - delta[first], np.diff(np.r_[np.flatnonzero(first), len(sid)]))
    rend = np.clip(c["rend0"][sid] + cum, c["top"][sid], len(_LADDER) - 1).astype(np.int8)
    seg_no = np.where(
        live[sid],
        np.floor(c["t0"][sid] / seg[sid]).astype(np.int64) - burst[sid] + k,
        c["vod_offset"][sid] + k,
    )

    # request level: per segment [variant playlist (live)] + segment, per rendition (all_rend: every one)
    n_rend = np.where(c["all_rend"][sid], len(_LADDER), 1)
    per_rend = np.where(live[sid], 2, 1)
    per_seg = n_rend * per_rend
    r_seg = np.repeat(np.arange(len(sid)), per_seg)
    j = _within(per_seg)
    r_sid = sid[r_seg]
    r_kind = np.where(live[r_sid] & (j % per_rend[r_seg] == 0), _VARIANT, _SEGMENT).astype(np.int8)
    r_rend = np.where(c["all_rend"][r_sid], (j // per_rend[r_seg]) % len(_LADDER), rend[r_seg]).astype(np.int8)
    r_t = t[r_seg] + np.where(r_kind == _SEGMENT, 0.05, 0.0) + (j // per_rend[r_seg]) * 0.08
    r_seg_no = seg_no[r_seg]
    r_k = k[r_seg]
    # start of playback: master + variant playlist
    starters = np.flatnonzero(c["master"])
    s_sid = np.repeat(starters, 2)
    s_kind = np.tile(np.array([_MASTER, _VARIANT], dtype=np.int8), len(starters))
    s_t = c["t0"][s_sid] + np.tile(np.array([0.0, 0.12]), len(starters))
    s_rend = c["rend0"][s_sid].astype(np.int8)

    r = {
        "stream": np.concatenate([s_sid, r_sid]).astype(np.int32),
        "kind": np.concatenate([s_kind, r_kind]),
        "t": np.concatenate([s_t, r_t]),
        "rend": np.concatenate([s_rend, r_rend]),
        "seg_no": np.concatenate([np.zeros(len(s_sid), np.int64), r_seg_no]),
        "k": np.concatenate([np.zeros(len(s_sid), np.int64), r_k]),
    }
    n = len(r["t"])
    st = r["stream"]

    # address slot
    n_slots = np.array([len(x) for x in streams.slots])
    width = int(n_slots.max())
    slot_table = np.full((n_streams, width), -1, dtype=np.int64)
    for i, slots in enumerate(streams.slots):
        slot_table[i, : len(slots)] = slots
    cut_width = max(1, max(len(x) for x in streams.cuts))
    cut_table = np.full((n_streams, cut_width), np.inf)
    for i, cuts in enumerate(streams.cuts):
        cut_table[i, : len(cuts)] = cuts
    frac = (r["t"] - c["t0"][st]) / np.maximum(c["t1"][st] - c["t0"][st], 1e-9)
    sequential = (frac[:, None] > cut_table[st]).sum(axis=1)
    salt = np.uint64(int(rng.integers(0, 2**62)))
    block_hash = _mix((st.astype(np.uint64) << np.uint64(32)) ^ (r["k"] // c["block"][st]).astype(np.uint64) ^ salt)
    request_hash = _mix(np.arange(n, dtype=np.uint64) ^ salt)
    mode = c["mode"][st]
    width_of = n_slots[st].astype(np.uint64)
    hashed = (np.where(mode == 1, block_hash, request_hash) % width_of).astype(np.int64)
    slot = np.where(mode == 0, sequential, hashed)
    slot = np.minimum(slot, n_slots[st] - 1)
    r["ip"] = slot_table[st, slot].astype(np.int32)
    return r


def _forged(
    sessions: np.ndarray, starts: np.ndarray, ends: np.ndarray, world: _World, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Requests others sent with the session ids of ``sessions`` (the edge denied them: 403)."""
    counts = rng.integers(5, 41, len(sessions))
    total = int(counts.sum())
    session = np.repeat(sessions, counts)
    t = rng.uniform(np.repeat(starts, counts), np.repeat(ends, counts))
    ips = np.empty(total, dtype=np.int32)
    attackers = np.array([world.address(*world.hosting()) for _ in range(max(4, len(sessions) // 2))])
    ips[:] = attackers[rng.integers(0, len(attackers), total)]
    return {"session": session, "t": t, "ip": ips}


# -- output ---------------------------------------------------------------------------------------------------------


@dataclass
class CorpusSummary:
    out_dir: str
    seed: int
    sessions: int
    legit: int
    pirates: int
    kinds: dict[str, int]
    records: int
    files: int
    bytes: int
    start_epoch: float
    end_epoch: float
    fields: list[str]
    seconds: float
    records_per_second: float
    hours: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_mix(mix: str) -> str:
    """``mix`` if it names one of ``MIXES``; a ValueError naming them otherwise."""
    if mix not in MIXES:
        raise ValueError(f"unknown mix {mix!r}: one of {', '.join(MIXES)}")
    return mix


def _kind_counts(sessions: int, pirate_share: float | None, mix: str = DEFAULT_MIX) -> dict[str, int]:
    """Sessions of each kind of the ``mix`` (``MIXES``), in ``KINDS`` order; ``plain`` takes what the others leave."""
    shares = dict(MIXES[check_mix(mix)])
    pirates = [k for k in shares if KINDS[k].label == "pirate"]
    if pirate_share is not None:
        base = sum(shares[k] for k in pirates)
        for k in pirates:
            shares[k] *= pirate_share / base
    counts = {k: int(round(sessions * s)) for k, s in shares.items() if k != "plain"}
    if sessions >= 2 * (len(shares) + 1):
        for k in counts:
            counts[k] = max(counts[k], 1)
    if sum(counts.values()) > sessions:
        scale = sessions / sum(counts.values())
        counts = {k: int(v * scale) for k, v in counts.items()}
    counts["plain"] = sessions - sum(counts.values())
    return {k: counts[k] for k in KINDS if k in counts}


def _session_ids(rng: np.random.Generator, n: int) -> list[str]:
    lengths = rng.integers(16, 33, n)
    chars = _REQUEST_ID_ALPHABET[rng.integers(0, 64, (n, 32))]  # base64url, like a request id
    out, seen = [], set()
    for i in range(n):
        sid = chars[i, : lengths[i]].tobytes().decode("ascii")
        while sid in seen:
            sid = _REQUEST_ID_ALPHABET[rng.integers(0, 64, 24)].tobytes().decode("ascii")
        seen.add(sid)
        out.append(sid)
    return out


def generate_corpus(
    out_dir: str | os.PathLike[str],
    sessions: int,
    minutes: float,
    seed: int,
    start_epoch: float = DEFAULT_START_EPOCH,
    fields: str | Sequence[str | Field] = DETECTION_FIELDS,
    *,
    pirate_share: float | None = None,
    mix: str = DEFAULT_MIX,
    workers: int = 2,
    compresslevel: int = 6,
    progress: Callable[[int, int], None] | None = None,
) -> CorpusSummary:
    """Write a labelled corpus of ``sessions`` playback sessions over ``minutes`` minutes from ``start_epoch``
    under ``out_dir`` (see the module docstring). ``mix`` chooses the kinds and their shares (``MIXES``);
    ``pirate_share`` overrides the pirate fraction (default about 3 %); ``progress(records_written, records_total)``
    is called after each file. Deterministic given ``seed`` and ``mix``."""
    clock = time.perf_counter()
    parsed = parse_fields(fields)
    if sessions < 1 or minutes <= 0:
        raise ValueError("sessions must be at least 1 and minutes positive")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    span = (float(start_epoch), float(start_epoch) + minutes * 60.0)

    world = _World(rng)
    streams = _Streams()
    builder = _Builder(world, streams, rng, span)
    counts = _kind_counts(sessions, pirate_share, mix)
    kinds = [k for k, n in counts.items() for _ in range(n)]
    order = rng.permutation(len(kinds))
    kinds = [kinds[i] for i in order]
    sids = _session_ids(rng, sessions)
    for s, kind in enumerate(kinds):
        builder.build(s, kind)

    c, stream_seg, stream_live = _per_stream(streams, world)
    req = _requests(streams, c, stream_seg, stream_live, rng)
    st = req["stream"]
    session_of_stream = np.asarray(streams.cols["session"], dtype=np.int32)
    req["session"] = session_of_stream[st]
    n_main = len(st)

    # forged requests (403 from other addresses) for the forged_requests kind
    forged_sessions = np.array([s for s, k in enumerate(kinds) if k == "forged_requests"], dtype=np.int32)
    forged = _forged(forged_sessions, np.full(len(forged_sessions), span[0]), np.full(len(forged_sessions), span[1]),
                     world, rng) if len(forged_sessions) else None  # fmt: skip

    # per-request attributes
    n = n_main + (len(forged["t"]) if forged else 0)
    kind = req["kind"]
    rend = req["rend"].astype(np.int64)
    seg_sec = stream_seg[st]
    live = stream_live[st]
    status = np.full(n_main, 200, dtype=np.int32)
    u = rng.random(n_main)
    is_seg = kind == _SEGMENT
    status[is_seg & c["ranges"][st]] = 206
    status[is_seg & (u < np.where(live, 0.003, 0.001))] = 404
    status[(kind == _VARIANT) & live & (u < 0.0008)] = 404
    status[(u > 0.9996)] = 403
    status[(u > 0.99985) & (u <= 0.9999)] = 502
    body = np.where(
        is_seg,
        _KBPS[rend] * 125.0 * seg_sec * rng.uniform(0.85, 1.15, n_main),
        np.where(kind == _MASTER, rng.uniform(850, 1300, n_main), rng.uniform(380, 900, n_main)),
    )
    body = np.where(status >= 400, rng.uniform(250, 600, n_main), body).astype(np.int64)
    header = rng.integers(330, 520, n_main)
    hit = rng.random(n_main)
    result = np.where(
        status >= 400, 3, np.where(is_seg, np.where(hit < 0.92, 0, np.where(hit < 0.98, 1, 2)), np.where(hit < 0.45, 0, 1))
    ).astype(np.int8)  # 0 Hit 1 Miss 2 RefreshHit 3 Error
    ttfb = np.where(result == 0, rng.uniform(0.001, 0.03, n_main), rng.uniform(0.02, 0.35, n_main))
    bw = c["bw"][st]
    time_taken = ttfb + body / bw * rng.uniform(0.7, 1.3, n_main)

    first_session, first_stream_index = np.unique(session_of_stream, return_index=True)  # each session's first player

    # forged requests: append
    if forged:
        nf = len(forged["t"])
        fsess = forged["session"]
        # a segment path of the session's first player's content
        first_stream = np.full(sessions, -1, dtype=np.int64)
        first_stream[first_session] = first_stream_index
        fst = first_stream[fsess].astype(np.int32)
        req = {
            "stream": np.concatenate([st, fst]),
            "session": np.concatenate([req["session"], fsess]),
            "kind": np.concatenate([kind, np.full(nf, _FORGED, np.int8)]),
            "t": np.concatenate([req["t"], forged["t"]]),
            "rend": np.concatenate([rend, rng.integers(0, len(_LADDER), nf)]),
            "seg_no": np.concatenate([req["seg_no"], rng.integers(0, 10**6, nf)]),
            "ip": np.concatenate([req["ip"], forged["ip"]]),
        }
        status = np.concatenate([status, np.full(nf, 403, np.int32)])
        body = np.concatenate([body, rng.integers(250, 600, nf)])
        header = np.concatenate([header, rng.integers(330, 520, nf)])
        result = np.concatenate([result, np.full(nf, 3, np.int8)])
        f_ttfb = rng.uniform(0.001, 0.004, nf)
        ttfb = np.concatenate([ttfb, f_ttfb])
        time_taken = np.concatenate([time_taken, f_ttfb + rng.uniform(0.0, 0.002, nf)])
        st = req["stream"]
        kind = req["kind"]

    timestamp = np.round(req["t"] + time_taken, 3)
    inside = (timestamp >= span[0]) & (timestamp < span[1])
    arrival = timestamp + rng.uniform(0.5, 4.0, n)
    order = np.argsort(np.where(inside, arrival, np.inf), kind="stable")[: int(inside.sum())]

    # session-level strings
    exp = np.zeros(sessions, dtype=np.int64)
    prefixes = []
    session_content = np.full(sessions, -1, dtype=np.int64)
    session_content[first_session] = c["content"][first_stream_index]
    session_t0 = np.full(sessions, np.inf)
    np.minimum.at(session_t0, session_of_stream, c["t0"])
    played: dict[int, set[str]] = {}
    for s_of, content_of in zip(session_of_stream.tolist(), c["content"].tolist()):
        played.setdefault(s_of, set()).add(f"/{world.contents[content_of][0]}/")
    for s in range(sessions):
        iat = int(session_t0[s]) - int(rng.integers(30, 3600))
        exp[s] = iat + int(rng.choice([4 * 3600, 8 * 3600, 24 * 3600]))
        token = session_token(sids[s], iat=iat, exp=int(exp[s]), paths=sorted(played.get(s, ())))
        prefixes.append(f"/{sids[s]}.{token}/")
    referer = np.array(
        [f"https://www.example-tv.com/watch/{world.contents[session_content[s]][0]}" for s in range(sessions)],
        dtype=object,
    )

    columns = _Columns(world, req, status, body, header, result, ttfb, time_taken, timestamp, c, prefixes, referer)

    # files: Firehose buffers (60 s or 128 MiB of records), hour folder of the oldest record's arrival
    arr = arrival[order]
    max_rows = max(1000, int(128 * 2**20 / 560))
    file_bounds: list[tuple[int, int]] = []
    a = 0
    while a < len(order):
        limit = np.searchsorted(arr, arr[a] + 60.0, side="left")
        b = int(min(limit, a + max_rows, len(order)))
        b = max(b, a + 1)
        file_bounds.append((a, b))
        a = b
    total = len(order)
    root_fields = fields_text(parsed)
    (root / "fields.txt").write_text(root_fields, encoding="utf-8")

    def write(i: int) -> tuple[str, int, int]:
        a, b = file_bounds[i]
        rows = order[a:b]
        table = columns.table(rows, parsed, np.random.default_rng([seed, i]))
        lines = tsv_lines(table, parsed, sanitize=False)
        data = _joined(lines)
        packed = zlib.compressobj(compresslevel, zlib.DEFLATED, 31)
        blob = packed.compress(data) + packed.flush()
        key = firehose_key(float(arr[a]), suffix=f"{seed}-{i}")
        target = root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(blob)
        return key, len(blob), b - a

    written = 0
    total_bytes = 0
    hours: set[str] = set()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for key, size, rows in pool.map(write, range(len(file_bounds))):
            written += rows
            total_bytes += size
            hours.add(key.rsplit("/", 1)[0])
            if progress:
                progress(written, total)

    labels = _labels(sids, kinds, req, inside, status, world, c, session_of_stream, exp, timestamp)
    labels.to_csv(root / "labels.csv", index=False)
    pq.write_table(pa.Table.from_pandas(labels, preserve_index=False), root / "labels.parquet", compression="zstd")

    seconds = time.perf_counter() - clock
    summary = CorpusSummary(
        out_dir=str(root),
        seed=seed,
        sessions=sessions,
        legit=sum(n for k, n in counts.items() if KINDS[k].label == "legit"),
        pirates=sum(n for k, n in counts.items() if KINDS[k].label == "pirate"),
        kinds=counts,
        records=total,
        files=len(file_bounds),
        bytes=total_bytes,
        start_epoch=span[0],
        end_epoch=span[1],
        fields=[f.name for f in parsed],
        seconds=round(seconds, 3),
        records_per_second=round(total / seconds, 1) if seconds else 0.0,
        hours=sorted(hours),
    )
    (root / "corpus.json").write_text(json.dumps(summary.to_dict(), indent=2) + "\n", encoding="utf-8")
    return summary


def _joined(lines: pa.Array) -> memoryview:
    """The lines as one newline-terminated UTF-8 buffer (a view on Arrow's data buffer, no copy)."""
    with_newline = pc.binary_join_element_wise(lines, pa.scalar("\n"), "")
    offsets = np.frombuffer(with_newline.buffers()[1], dtype=np.int32)[with_newline.offset :][: len(with_newline) + 1]
    return memoryview(with_newline.buffers()[2])[int(offsets[0]) : int(offsets[-1])]


_CONTENT_TYPE = pa.array(["application/vnd.apple.mpegurl", "application/vnd.apple.mpegurl", "video/MP2T", "video/MP2T",
                          "text/html"])  # fmt: skip
_RESULT = pa.array(["Hit", "Miss", "RefreshHit", "Error"])


class _Columns:
    """Builds the typed columns of a set of request rows, only for the fields asked for."""

    def __init__(self, world: _World, req: dict[str, np.ndarray], status: np.ndarray, body: np.ndarray,
                 header: np.ndarray, result: np.ndarray, ttfb: np.ndarray, time_taken: np.ndarray,
                 timestamp: np.ndarray, c: dict[str, np.ndarray], prefixes: list[str], referer: np.ndarray) -> None:  # fmt: skip
        self.w = world
        self.req = req
        self.status = status
        self.body = body
        self.header = header
        self.result = result
        self.ttfb = ttfb
        self.time_taken = time_taken
        self.timestamp = timestamp
        self.c = c
        self.ip = pa.array(world.ip, pa.string())
        self.ip_version = pa.array(["IPv6" if v else "IPv4" for v in world.ip_v6], pa.string())
        self.ip_country = pa.array(world.ip_country, pa.string())
        self.ip_asn = np.asarray(world.ip_asn, dtype=np.int64)
        self.ip_edge = pa.array(world.ip_edge, pa.string())
        self.forger_ua = world.user_agent("tool")
        self.ua = pa.array([encode_user_agent(u) for u in world.ua], pa.string())
        self.prefix = pa.array(prefixes, pa.string())
        self.referer = pa.array(referer.tolist(), pa.string())
        self.content_name = pa.array([name for name, _, _ in world.contents], pa.string())
        self.rendition = pa.array(_LADDER, pa.string())

    def _uri(self, rows: np.ndarray) -> pa.Array:
        req = self.req
        kind = req["kind"][rows]
        st = req["stream"][rows]
        content = pa.array(self.c["content"][st])
        channel = pc.take(self.content_name, content)
        rend = pc.take(self.rendition, pa.array(req["rend"][rows].astype(np.int64)))
        seg = pc.binary_join_element_wise("seg_", pa.array(req["seg_no"][rows]).cast(pa.string()), ".ts", "")
        leaf = pc.if_else(pa.array(kind == _VARIANT), pa.scalar("index.m3u8"), seg)
        asset = pc.binary_join_element_wise(channel, rend, leaf, "/")
        master = pc.binary_join_element_wise(channel, "master.m3u8", "/")
        asset = pc.if_else(pa.array(kind == _MASTER), master, asset)
        prefix = pc.take(self.prefix, pa.array(req["session"][rows]))
        return pc.binary_join_element_wise(prefix, asset, "")

    @cached_property
    def player_sids(self) -> pa.Array:
        """Each player's CMCD session id, a UUID stable for the seed and unique per stream: made once per player, not
        per request."""
        streams = np.arange(len(self.c["cmcd"]), dtype=np.uint64)
        return pa.array([f"{int(d) & 0xFFFFFFFF:08x}-{int(s) % 65536:04x}-4{(int(d) >> 32) & 0xFFF:03x}-8000-"
                         f"{int(s):012x}" for d, s in zip(_mix(streams), streams, strict=True)], pa.string())

    def _cmcd(self, name: str, rows: np.ndarray) -> pa.Array:
        """What a player that sends CMCD puts in each of its requests (the others, and forged requests, send none):
        its own session id, the content, and its buffer and throughput (derived from the player's bandwidth)."""
        req = self.req
        st = req["stream"][rows]
        sends = pa.array(self.c["cmcd"][st].astype(bool) & (req["kind"][rows] != _FORGED))
        none = pa.scalar(None, pa.string() if name in ("cmcd_session_id", "cmcd_content_id") else pa.int64())
        if name == "cmcd_session_id":
            values = pc.take(self.player_sids, pa.array(st))
        elif name == "cmcd_content_id":
            values = pc.take(self.content_name, pa.array(self.c["content"][st]))
        elif name == "cmcd_measured_throughput":  # kbps
            values = pa.array((self.c["bw"][st] * 8 / 1000).astype(np.int64))
        elif name == "cmcd_playback_rate":  # sent only when not 1, as CTA-5004 asks
            rate = self.c["rate"][st].astype(np.float64)
            sends = pc.and_(sends, pa.array(rate != 1.0))
            values = pa.array(rate)
            none = pa.scalar(None, pa.float64())
        elif name == "cmcd_buffer_length":  # ms, rounded to 100 as the spec asks
            values = pa.array((np.minimum(30_000, 6_000 + (self.timestamp[rows] - self.c["t0"][st]) * 400) // 100 * 100)
                              .astype(np.int64))
        else:
            return pa.nulls(len(rows), pa.string())
        return pc.if_else(sends, values, none)

    def table(self, rows: np.ndarray, fields: Sequence[Field], rng: np.random.Generator) -> pa.Table:
        req, n = self.req, len(rows)
        ip = pa.array(req["ip"][rows].astype(np.int64))
        kind = req["kind"][rows]
        status = self.status[rows]
        body = self.body[rows]
        st = req["stream"][rows]
        out: dict[str, Any] = {}
        for f in fields:
            name = f.column
            if name == "timestamp":
                out[name] = pa.array(self.timestamp[rows])
            elif name == "c_ip":
                out[name] = pc.take(self.ip, ip)
            elif name == "s_ip":
                h = _mix(req["ip"][rows].astype(np.uint64))
                out[name] = pa.array([f"18.{64 + int(x) % 64}.{int(x >> 8) % 256}.{int(x >> 16) % 250 + 1}" for x in h])
            elif name == "time_to_first_byte":
                out[name] = _fixed3(self.ttfb[rows])
            elif name == "sc_status":
                out[name] = pa.array(status)
            elif name == "sc_bytes":
                out[name] = pa.array(body + self.header[rows])
            elif name == "cs_method":
                out[name] = pa.repeat(pa.scalar("GET"), n)
            elif name == "cs_protocol":
                out[name] = pa.repeat(pa.scalar("https"), n)
            elif name in ("cs_host", "x_host_header"):
                out[name] = pa.repeat(pa.scalar(DEFAULT_HOST), n)
            elif name == "cs_uri_stem":
                out[name] = self._uri(rows)
            elif name == "cs_bytes":
                out[name] = pa.array(rng.integers(380, 720, n))
            elif name == "x_edge_location":
                out[name] = pc.take(self.ip_edge, ip)
            elif name == "x_edge_request_id":
                out[name] = _request_ids(rng, n)
            elif name == "time_taken":
                out[name] = _fixed3(self.time_taken[rows])
            elif name == "cs_protocol_version":
                out[name] = pc.take(pa.array(["HTTP/2.0", "HTTP/1.1"]), pa.array((rng.random(n) < 0.2).astype(np.int8)))
            elif name == "c_ip_version":
                out[name] = pc.take(self.ip_version, ip)
            elif name == "cs_user_agent":
                alt = self.c["ua_alt"][st] & (kind == _SEGMENT)
                index = np.where(alt, self.c["ua_b"][st], self.c["ua_a"][st])
                index = np.where(kind == _FORGED, self.forger_ua, index)
                out[name] = pc.take(self.ua, pa.array(index))
            elif name == "cs_referer":
                browser = self.c["browser"][st] & (kind != 3)
                ref = pc.take(self.referer, pa.array(req["session"][rows]))
                out[name] = pc.if_else(pa.array(browser), ref, pa.scalar(None, pa.string()))
            elif name in ("x_edge_result_type", "x_edge_response_result_type", "x_edge_detailed_result_type"):
                out[name] = pc.take(_RESULT, pa.array(self.result[rows]))
            elif name in ("ssl_protocol", "ssl_cipher"):
                value = "TLSv1.3" if name == "ssl_protocol" else "TLS_AES_128_GCM_SHA256"
                out[name] = pa.repeat(pa.scalar(value), n)
            elif name == "sc_content_type":
                out[name] = pc.take(_CONTENT_TYPE, pa.array(np.where(status >= 400, 4, kind).astype(np.int8)))
            elif name == "sc_content_len":
                out[name] = pa.array(body)
            elif name in ("sc_range_start", "sc_range_end"):
                ranged = status == 206
                values = np.zeros(n, dtype=np.int64) if name == "sc_range_start" else body - 1
                out[name] = pa.array(values, mask=~ranged)
            elif name == "c_port":
                out[name] = pa.array(rng.integers(1024, 65536, n))
            elif name == "c_country":
                out[name] = pc.take(self.ip_country, ip)
            elif name == "cache_behavior_path_pattern":
                out[name] = pa.repeat(pa.scalar("*"), n)
            elif name == "cs_headers_count":
                out[name] = pa.array(rng.integers(7, 15, n))
            elif name in ("origin_fbl", "origin_lbl"):
                miss = self.result[rows] == 1
                value = self.ttfb[rows] * (0.8 if name == "origin_fbl" else 1.0)
                out[name] = _fixed3(value, miss)
            elif name == "asn":
                out[name] = pa.array(self.ip_asn[req["ip"][rows]])
            elif name.startswith("cmcd_"):
                out[name] = self._cmcd(name, rows)
            # every other field: written as "-"
        return pa.table(out) if out else pa.table({"_": pa.nulls(n)})


def _group_join(keys: np.ndarray, values: Sequence[str], n: int, unique: bool = False) -> list[str]:
    """``";".join`` of ``values`` per key 0..n-1 (``keys`` sorted ascending)."""
    out = [""] * n
    if not len(keys):
        return out
    bounds = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1], True])
    for a, b in zip(bounds[:-1], bounds[1:]):
        chunk = values[a:b]
        out[int(keys[a])] = ";".join(sorted(set(chunk)) if unique else chunk)
    return out


def _labels(sids: list[str], kinds: list[str], req: dict[str, np.ndarray], inside: np.ndarray, status: np.ndarray,
            world: _World, c: dict[str, np.ndarray], session_of_stream: np.ndarray, exp: np.ndarray,
            timestamp: np.ndarray) -> pd.DataFrame:  # fmt: skip
    """Ground truth per session, from the records actually written."""
    n = len(sids)
    sess = req["session"][inside].astype(np.int64)
    ok = (status[inside] >= 200) & (status[inside] < 300)
    ts = timestamp[inside]
    # distinct (session, ip) of served requests
    key = np.unique(sess[ok] * (1 << 32) + req["ip"][inside][ok].astype(np.int64))
    pair_session, pair_ip = key >> 32, key & 0xFFFFFFFF
    ip_text = [world.ip[i] for i in pair_ip]
    asn_text = [str(world.ip_asn[i]) for i in pair_ip]
    country_text = [world.ip_country[i] for i in pair_ip]
    requests = np.bincount(sess, minlength=n)
    requests_ok = np.bincount(sess, weights=ok, minlength=n).astype(np.int64)
    first = np.full(n, np.inf)
    last = np.full(n, -np.inf)
    np.minimum.at(first, sess, ts)
    np.maximum.at(last, sess, ts)
    names = [name for name, _, _ in world.contents]
    live = np.asarray([lv for _, _, lv in world.contents])
    order = np.argsort(session_of_stream, kind="stable")
    stream_session = session_of_stream[order].astype(np.int64)
    stream_content = c["content"][order]
    all_live = np.ones(n, dtype=bool)
    np.logical_and.at(all_live, stream_session, live[stream_content])
    return pd.DataFrame(
        {
            "session_id": sids,
            "label": [KINDS[k].label for k in kinds],
            "kind": kinds,
            "live": all_live,
            "channels": _group_join(stream_session, [names[i] for i in stream_content], n, unique=True),
            "streams": np.bincount(stream_session, minlength=n),
            "ips": _group_join(pair_session, ip_text, n),
            "asns": _group_join(pair_session, asn_text, n, unique=True),
            "countries": _group_join(pair_session, country_text, n, unique=True),
            "n_ips": np.bincount(pair_session, minlength=n),
            "requests": requests,
            "requests_2xx": requests_ok,
            "first_seen": np.where(np.isfinite(first), first, np.nan),
            "last_seen": np.where(np.isfinite(last), last, np.nan),
            "exp": exp,
        }
    )
