"""Calling hours in the callee's local time: the window a job may be dialed in, and the zone it is read in.

The zone comes from the callee's number when it maps to exactly one, else from the caller (``time_zone``)
or the organization's default. The queue checks a job against its window when claiming it
(``window_check``) and postpones it to the next opening otherwise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as number_time_zones

from parley.jobs.job_input import InvalidOutboundJob
from parley.store.models import OutboundJob

DEFAULT_TIME_ZONE = "UTC"
"""Where a number's local time is unknown (a toll-free or mobile range spanning zones): the organization's
default, which is UTC until organizations carry a zone of their own."""
_HORIZON_DAYS = 3
"""How far ahead an opening is looked for: a window opens every day, but one wholly in a skipped hour
(or a skipped day: Pacific/Apia, 30 December 2011) waits a day more."""
_STEP = timedelta(hours=1)
_RESOLUTION = timedelta(microseconds=1)
_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


def zone_of(number: phonenumbers.PhoneNumber) -> str:
    """The callee's time zone when the number maps to exactly one, else ``DEFAULT_TIME_ZONE``."""
    zones = number_time_zones.time_zones_for_number(number)
    if len(zones) == 1 and zones[0] != number_time_zones.UNKNOWN_TIMEZONE:
        try:
            ZoneInfo(zones[0])
        except (ZoneInfoNotFoundError, ValueError):
            return DEFAULT_TIME_ZONE
        return str(zones[0])
    return DEFAULT_TIME_ZONE


def checked_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # OSError: "America" is a folder
        raise InvalidOutboundJob(f"unknown time zone {name!r} (an IANA name such as Europe/London)") from exc
    return name


@dataclass(frozen=True, slots=True)
class CallingWindow:
    """Calling hours, minutes after local midnight; ``end`` before ``start`` crosses midnight."""

    start: int
    end: int

    @classmethod
    def parse(cls, text: str) -> CallingWindow:
        match = _WINDOW.match(text)
        if match is None:
            raise InvalidOutboundJob(f"calling window {text!r} is not HH:MM-HH:MM (e.g. 09:00-20:00)")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        window = cls(h1 * 60 + m1, h2 * 60 + m2)
        if h2 == 24 and m2 != 0:
            raise InvalidOutboundJob(f"calling window {text!r} ends after 24:00")
        if window.start == window.end:
            raise InvalidOutboundJob(f"calling window {text!r} is empty (use 00:00-24:00 for all day)")
        return window

    @property
    def bounds(self) -> tuple[str, str]:
        return f"{self.start // 60:02d}:{self.start % 60:02d}", f"{self.end // 60:02d}:{self.end % 60:02d}"

    def contains(self, minute: int) -> bool:
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end

    def next_opening(self, now: datetime, zone: ZoneInfo) -> datetime | None:
        """None when ``now`` is within the window, else the first instant after it when the callee's clock
        reads a minute inside the window (UTC): the job is postponed to it, and claimed there only if
        ``contains`` agrees, so an opening already past (an hour repeated when clocks go back, read as its
        first pass) would have the queue claim and postpone the job at every poll.

        Clocks changing are handled as the callee lives them. When they go back, the repeated hour is
        lived twice, so a window in it opens again on its second pass. When they go forward over the start
        (a 02:30 start on a night that jumps from 02:00 to 03:00), the window opens at the jump if the
        clock then reads a time inside it (03:00 for 02:30-04:00); a window lying wholly in the skipped
        hour (02:15-02:45) does not happen that day, and opens the next day."""
        local = now.astimezone(zone)
        if self.contains(local.hour * 60 + local.minute):
            return None
        starts: list[datetime] = []  # the clock reading the start: twice in a repeated hour, never in a gap
        for n in range(-1, _HORIZON_DAYS):
            for fold in (0, 1):
                wall = time(self.start // 60, self.start % 60, fold=fold)
                instant = _instant(local.date() + timedelta(days=n), wall, zone)
                if instant is not None and instant > now:
                    starts.append(instant)
        first = min(starts, default=now + timedelta(days=_HORIZON_DAYS))  # never empty for a real zone
        for change in _clock_changes(now, first, zone):  # the clock jumping into the window, start unread
            moved = change.astimezone(zone)
            if self.contains(moved.hour * 60 + moved.minute):
                return change
        return first


def _instant(day: date, wall: time, zone: ZoneInfo) -> datetime | None:
    """When (UTC) the clock in ``zone`` reads ``wall`` on ``day`` (its ``fold`` picks the pass through a
    repeated hour), or None when the clock skips that time."""
    local = datetime.combine(day, wall, tzinfo=zone)
    instant = local.astimezone(UTC)
    return instant if instant.astimezone(zone).replace(tzinfo=None) == local.replace(tzinfo=None) else None


def _clock_changes(since: datetime, until: datetime, zone: ZoneInfo) -> list[datetime]:
    """The instants (UTC) after ``since`` and before ``until`` when ``zone``'s offset changes, in order:
    the offsets an hour apart are compared (no zone has changed twice within an hour), then each change
    is bisected to the microsecond."""
    changes: list[datetime] = []
    before = since.astimezone(UTC)
    offset = before.astimezone(zone).utcoffset()
    while before < until:
        after = before + _STEP
        if (later := after.astimezone(zone).utcoffset()) != offset:
            old, new = before, after
            while new - old > _RESOLUTION:
                middle = old + (new - old) / 2
                old, new = (middle, new) if middle.astimezone(zone).utcoffset() == offset else (old, middle)
            if new < until:
                changes.append(new)
        before, offset = after, later
    return changes


def window_check(job: OutboundJob, now: datetime) -> datetime | None:
    window = CallingWindow.parse(f"{job.window_start}-{job.window_end}")
    return window.next_opening(now, ZoneInfo(job.time_zone))
