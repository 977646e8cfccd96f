"""Faster than real time: a session advancing through its title or channel faster than real-time playback."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from detection.scoring.reasons.base import Evidence, Fired, ReasonRule, Section, SessionTable
from revocation.ledger.base import Reason


class PlaybackRateSection(Section):
    """Sustained advance through the media faster than real time: a download (a ripper pulling a title at 1.3x or
    more), or several players of one title at different positions. Pace is media, not requests: per minute, the
    segments the session advanced through (features.sql ``advance``: retries, rendition switches and byte ranges
    add requests, not media; players at the live edge share one position). A session's pace is the median of its
    interior minutes (not its first or last: startup bursts and partial minutes), so a buffer refill or a seek moves
    one minute, not the median; and most interior minutes (``min_share_of_minutes``) must each be that fast: a cast
    or a restart refills a buffer once, a download keeps pulling ahead. A title's real-time pace is the median pace
    of the *other* sessions that play only it, each over the minutes it was playing (real players advance at real
    time once their buffer is full; a pause must not slow the reference; a median ignores the few fast ones). With
    fewer than ``crowd_min_sessions`` others the speed must reach ``min_speed * small_crowd_factor``; with none, one
    segment per ``fallback_segment_seconds`` is assumed. A crowd pace is never taken below one segment per
    ``max_segment_seconds``: a paused crowd is not real time. A player that reports a faster playback rate (CMCD
    ``pr``: a viewer watching at 1.5x) is held to that rate, up to ``max_reported_rate``."""

    min_speed: float = Field(1.25, gt=1, description="Session pace over the title's real-time pace.")
    min_minutes: int = Field(3, ge=1, description="Interior minutes needed to judge the pace (sustained).")
    crowd_min_sessions: int = Field(3, ge=1, description="Other sessions of the title for the plain threshold.")
    crowd_min_minutes: int = Field(2, ge=1, description="Interior minutes a session needs to count in the crowd.")
    crowd_quantile: float = Field(0.5, ge=0, le=0.5, description="Quantile of the crowd's paces (the median).")
    small_crowd_factor: float = Field(1.5, ge=1, description="Threshold factor with fewer other sessions.")
    fallback_segment_seconds: float = Field(
        2.0,
        gt=0,
        description="Segment duration assumed for a title nobody else plays: the shortest in common use, so the "
        "speed is never overestimated.",
    )
    min_share_of_minutes: float = Field(
        0.8,
        gt=0.5,
        le=1,
        description="Share of the interior minutes that must each be that fast: a download keeps pulling ahead "
        "minute after minute; a player's start, a cast or a restart fills a buffer (hls.js 30 s, Media3/ExoPlayer "
        "50 s by default) in a minute or two, then plays at real time.",
    )
    max_reported_rate: float = Field(
        2.0, ge=1, description="Highest CMCD playback rate (pr) that excuses a faster pace (players offer up to 2x)."
    )
    max_segment_seconds: float = Field(
        10.0,
        gt=0,
        description="Longest segment duration in common use (HLS target durations are 2-10 s): real-time playback "
        "advances at least 60 / this many segments a minute, so a crowd pace below that is a paused or stalled crowd "
        "and is raised to it (one paused viewer must not make everyone else look fast).",
    )


@dataclass(frozen=True)
class Playback:
    """Per session: its pace (median advance, in segments, per interior minute), its main channel's real-time pace
    (NaN when nobody else plays it), how many other sessions that pace comes from, its speed against real time, the
    speed it must reach, its interior minutes, how many of them were that fast, and the media it advanced beyond
    real time. Verdicts show these whether or not the reason is enabled."""

    pace: np.ndarray
    channel_pace: np.ndarray
    channel_sessions: np.ndarray
    speed: np.ndarray
    needed: np.ndarray
    interior: np.ndarray
    channels: np.ndarray
    ahead: np.ndarray  # seconds of media advanced beyond real time over the interior minutes
    fast_minutes: np.ndarray  # interior minutes at the needed speed or more


def _paces(
    parents: np.ndarray, minute: np.ndarray, advance: np.ndarray, rows: int, playing: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per session, over its interior minutes (not its first or last minute; minutes without a pace left out):
    the median advance per minute (its pace), the median over the minutes it was playing (advancing at least
    ``playing`` segments: its pace as a reference for others, which a pause must not lower), and how many interior
    minutes there are; and which per-minute entries are interior minutes with a pace."""
    pace = np.full(rows, np.nan)
    reference = np.full(rows, np.nan)
    interior = np.zeros(rows, dtype=np.int64)
    if len(parents) == 0:
        return pace, reference, interior, np.zeros(0, dtype=bool)
    first = np.full(rows, np.iinfo(np.int64).max)
    last = np.full(rows, np.iinfo(np.int64).min)
    minute = minute.astype(np.int64)
    np.minimum.at(first, parents, minute)
    np.maximum.at(last, parents, minute)
    inside = (minute > first[parents]) & (minute < last[parents]) & ~np.isnan(advance)
    frame = pd.DataFrame({"row": parents[inside], "advance": advance[inside]})
    grouped = frame.groupby("row", sort=False)["advance"].agg(["median", "size"])
    index = grouped.index.to_numpy()
    pace[index] = grouped["median"].to_numpy()
    interior[index] = grouped["size"].to_numpy()
    active = frame[frame["advance"] >= playing].groupby("row", sort=False)["advance"].agg(["median", "size"])
    steady = active[active["size"] >= 2]  # a reference needs two playing minutes
    reference[steady.index.to_numpy()] = steady["median"].to_numpy()
    return pace, reference, interior, inside


def _channel_paces(
    channel: np.ndarray, reference: np.ndarray, usable: np.ndarray, quantile: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per session: the real-time pace of its main channel - the ``quantile`` of the paces of the *other* sessions
    that play only that channel - and how many other sessions that is (NaN and 0 without any). The median keeps the
    few fast sessions of a channel (pirates cluster on popular content) from raising its pace."""
    rows = len(reference)
    result = np.full(rows, np.nan)
    others = np.zeros(rows, dtype=np.int64)
    frame = pd.DataFrame({"channel": channel, "pace": reference, "row": np.arange(rows)})[usable]
    lookup: dict[Any, tuple[float, int]] = {}
    for name, group in frame.groupby("channel", sort=False):
        idx = group["row"].to_numpy()
        values = group["pace"].to_numpy()
        n = len(values)
        lookup[name] = (float(np.quantile(values, quantile)), n)
        if n >= 20:  # one session more or less hardly moves a quantile of twenty
            result[idx] = lookup[name][0]
        elif n >= 2:  # leave the session itself out
            for i, row in enumerate(idx):
                result[row] = float(np.quantile(np.delete(values, i), quantile))
        others[idx] = n - 1
    # sessions that do not count themselves (several channels, too short) still get their main channel's pace
    for row in np.flatnonzero(~usable):
        found = lookup.get(channel[row])
        if found is not None:
            result[row], others[row] = found
    return result, others


def playback(table: SessionTable, section: PlaybackRateSection) -> Playback:
    """Every session's pace against its channel's real-time pace (see :class:`PlaybackRateSection`); computed once
    per table and section."""
    return table.memo(("playback", section), lambda: _playback(table, section))


def _playback(table: SessionTable, section: PlaybackRateSection) -> Playback:
    channels = table.objects("main_channel")
    floor = 60.0 / section.max_segment_seconds
    rate = np.clip(np.nan_to_num(table.per_minute("playback_rate", np.nan), nan=1.0), 1.0, section.max_reported_rate)
    advance = table.per_minute("advance", np.nan) / rate  # media at the rate the player says it plays
    parents = table.minute_rows
    pace, reference, interior, inside = _paces(parents, table.per_minute("minute"), advance, table.rows, floor)
    usable = ((table.numbers("distinct_channels") == 1) & (interior >= section.crowd_min_minutes)
              & pd.notna(channels) & ~np.isnan(reference))
    channel_pace, crowd = _channel_paces(channels, reference, usable, section.crowd_quantile)
    realtime = np.where(np.isnan(channel_pace), 60.0 / section.fallback_segment_seconds,
                        np.maximum(channel_pace, floor))
    with np.errstate(divide="ignore", invalid="ignore"):
        speed = np.where(realtime > 0, np.nan_to_num(pace) / realtime, 0.0)
    needed = np.where(crowd >= section.crowd_min_sessions, section.min_speed,
                      section.min_speed * section.small_crowd_factor)
    # per session, over its interior minutes: the media advanced beyond real time, in seconds (what an explanation
    # shows), and the minutes that were each fast enough (what sustained means)
    rows = parents[inside]
    over = (advance[inside] - realtime[rows]) * 60.0 / realtime[rows]
    ahead = np.bincount(rows, weights=over, minlength=table.rows) if len(rows) else np.zeros(table.rows)
    fast = advance[inside] >= needed[rows] * realtime[rows]
    fast_minutes = np.bincount(rows[fast], minlength=table.rows) if len(rows) else np.zeros(table.rows, np.int64)
    return Playback(pace, channel_pace, crowd, speed, needed, interior, channels, ahead, fast_minutes)


class PlaybackRate(ReasonRule):
    code = "playback_rate"
    Section = PlaybackRateSection
    evidence = Evidence.CONCURRENT

    def fire(self, table: SessionTable, section: Any, scored: np.ndarray) -> Fired:
        seen = playback(table, section)
        mask = ((seen.speed >= seen.needed) & (seen.interior >= section.min_minutes)
                & (seen.fast_minutes >= np.ceil(section.min_share_of_minutes * seen.interior - 1e-9)))
        return Fired(mask, section.weight, {"speed": seen.speed, "needed": seen.needed, "pace": seen.pace,
                                            "channel_pace": seen.channel_pace, "crowd": seen.channel_sessions,
                                            "ahead": seen.ahead, "fast": seen.fast_minutes,
                                            "interior": seen.interior})

    def explain(self, record: Mapping[str, Any], row: int, section: Any, fired: Fired) -> Reason:
        realtime = float(fired.value("channel_pace", row))
        known = not math.isnan(realtime)
        values = {"speed": round(float(fired.value("speed", row)), 2),
                  "segments_per_minute": round(float(fired.value("pace", row)), 2),
                  "realtime_segments_per_minute": round(realtime, 2) if known else None,
                  "channel_sessions": int(fired.value("crowd", row)), "channel": record.get("main_channel"),
                  "seconds_ahead": round(float(fired.value("ahead", row)), 1),
                  "fast_minutes": int(fired.value("fast", row)), "interior_minutes": int(fired.value("interior", row))}
        thresholds: dict[str, Any] = {"min_speed": round(float(fired.value("needed", row)), 3),
                                      "min_minutes": section.min_minutes,
                                      "min_share_of_minutes": section.min_share_of_minutes}
        if not known:
            thresholds["fallback_segment_seconds"] = section.fallback_segment_seconds
        basis = (f"the {values['realtime_segments_per_minute']} of real-time playback of {values['channel']} (from "
                 f"{values['channel_sessions']} other session(s))" if known else
                 f"{60 / section.fallback_segment_seconds:g} assumed (nobody else plays {values['channel']})")
        detail = (f"{values['speed']}x real-time playback: advanced {values['segments_per_minute']} segments per "
                  f"minute against {basis}, in {values['fast_minutes']} of {values['interior_minutes']} minutes; "
                  f"{values['seconds_ahead']:g} s of media ahead of real time")
        return self.reason(detail, section.weight, values, thresholds)
