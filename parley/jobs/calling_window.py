"""Calling hours in the callee's local time: the window a job may be dialed in, and the zone it is read in.

The zone comes from the callee's number when it maps to exactly one, else from the caller (``time_zone``)
or the organization's default. The queue checks a job against its window when claiming it
(``window_check``) and postpones it to the next opening otherwise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as number_time_zones

from parley.jobs.job_input import InvalidOutboundJob
from parley.store.models import OutboundJob

DEFAULT_TIME_ZONE = "UTC"
"""Where a number's local time is unknown (a toll-free or mobile range spanning zones): the organization's
default, which is UTC until organizations carry a zone of their own."""
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
        """None when ``now`` is within the window, else when it next opens (UTC)."""
        local = now.astimezone(zone)
        minute = local.hour * 60 + local.minute
        if self.contains(minute):
            return None
        day = local.date()
        if self.start < self.end and minute >= self.end:
            day += timedelta(days=1)  # closed for today: tomorrow morning
        opening = datetime.combine(day, time(self.start // 60, self.start % 60), tzinfo=zone)
        return opening.astimezone(UTC)


def window_check(job: OutboundJob, now: datetime) -> datetime | None:
    window = CallingWindow.parse(f"{job.window_start}-{job.window_end}")
    return window.next_opening(now, ZoneInfo(job.time_zone))
