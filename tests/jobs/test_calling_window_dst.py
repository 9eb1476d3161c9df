"""A job's next calling window opens after now, in the callee's local time, across clock changes.

Where the clocks go back, the repeated hour is lived twice and a window in it opens again on its second
pass (not on the first, by then past: the queue would claim and postpone the job at every poll). Where
they jump over the window's start, it opens at the jump if the clock then reads a time inside it, and the
next day if the whole window was skipped.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from parley.jobs.calling_window import CallingWindow


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _open_at(window: CallingWindow, instant: datetime, zone: ZoneInfo) -> bool:
    local = instant.astimezone(zone)
    return window.contains(local.hour * 60 + local.minute)


@pytest.mark.parametrize(
    ("zone", "window", "now", "opening"),
    [
        # 01:00 CDT goes back to 00:00 CST: 05:00Z is 00:00 on the second pass; 00:30 CST is 05:30Z
        ("America/Havana", "00:30-01:00", "2026-11-01T05:00", "2026-11-01T05:30"),
        # 00:00 -03 goes back to 23:00 -04 on 4 April: 03:00Z is 23:00 again; 23:30 -04 is 03:30Z
        ("America/Santiago", "23:30-00:30", "2026-04-05T03:00", "2026-04-05T03:30"),
        # Ramadan: 03:00 +01 goes back to 02:00 +00; 02:00Z is 02:00 again, 02:30 +00 is 02:30Z
        ("Africa/Casablanca", "02:30-03:00", "2026-02-15T02:00", "2026-02-15T02:30"),
        # spring forward over the start: 02:00 EST jumps to 03:00 EDT (07:00Z), inside 02:30-04:00
        ("America/New_York", "02:30-04:00", "2026-03-08T05:00", "2026-03-08T07:00"),
        # the whole window is skipped that night: it opens the next night at 02:15 EDT
        ("America/New_York", "02:15-02:45", "2026-03-08T05:00", "2026-03-09T06:15"),
        # Lord Howe Island moves by half an hour: 02:00 +10:30 jumps to 02:30 +11, inside 02:15-03:00
        ("Australia/Lord_Howe", "02:15-03:00", "2026-10-03T15:00", "2026-10-03T15:30"),
        # Samoa skipped 30 December 2011: a morning window on the 29th next opens on the 31st
        ("Pacific/Apia", "10:00-11:00", "2011-12-29T22:00", "2011-12-30T20:00"),
    ],
)
def test_the_next_opening_across_a_clock_change_is_not_in_the_past(
    zone: str, window: str, now: str, opening: str
) -> None:
    hours = CallingWindow.parse(window)
    assert hours.next_opening(_utc(now), ZoneInfo(zone)) == _utc(opening)
    assert _open_at(hours, _utc(opening), ZoneInfo(zone))


SWEPT = [
    ("America/Havana", "00:30-01:00"),  # changes at local midnight
    ("America/Santiago", "23:30-00:30"),
    ("Africa/Casablanca", "02:30-03:00"),  # goes back for Ramadan, forward after it
    ("America/New_York", "02:15-02:45"),  # wholly in the skipped hour in March
    ("Europe/London", "20:00-08:00"),  # overnight, across the 01:00 change
    ("Australia/Lord_Howe", "02:15-03:00"),  # half-hour changes
]


@pytest.mark.parametrize(("zone", "window"), SWEPT)
def test_every_quarter_hour_of_a_year_the_opening_is_ahead_and_inside_the_window(
    zone: str, window: str
) -> None:
    """Every 15 minutes through 2026: no opening when the window is open, else one after now whose local
    time is in the window, entered then (a minute earlier the window was still closed)."""
    tz, hours = ZoneInfo(zone), CallingWindow.parse(window)
    now, end = _utc("2026-01-01T00:00"), _utc("2027-01-01T00:00")
    while now < end:
        opening = hours.next_opening(now, tz)
        if _open_at(hours, now, tz):
            assert opening is None, now
        else:
            assert opening is not None and opening > now, now
            assert _open_at(hours, opening, tz), (now, opening.astimezone(tz))
            assert not _open_at(hours, opening - timedelta(minutes=1), tz), (now, opening)
            assert opening - now <= timedelta(days=2), (now, opening)
        now += timedelta(minutes=15)


def _first_open_minute(hours: CallingWindow, now: datetime, zone: ZoneInfo) -> datetime:
    """By brute force: the first whole UTC minute after ``now`` when the window is open (every offset
    of the swept zones in 2026 is whole minutes, so the window opens on one)."""
    instant = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while not _open_at(hours, instant, zone):
        instant += timedelta(minutes=1)
    return instant


@pytest.mark.parametrize(("zone", "window"), SWEPT)
def test_around_each_clock_change_the_opening_is_the_first_moment_the_window_is_open(
    zone: str, window: str
) -> None:
    """Near a change, every 15 minutes for a day either side, the opening is the first minute the
    window is open: none is skipped (a repeated hour's second pass), none is past."""
    tz, hours = ZoneInfo(zone), CallingWindow.parse(window)
    start, end = _utc("2026-01-01T00:00"), _utc("2027-01-01T00:00")
    changes: list[datetime] = []
    hour = start
    while hour < end:
        if hour.astimezone(tz).utcoffset() != (hour + timedelta(hours=1)).astimezone(tz).utcoffset():
            changes.append(hour)
        hour += timedelta(hours=1)
    assert changes, f"{zone} changes its clocks in 2026"
    for change in changes:
        now = change - timedelta(days=1)
        while now < change + timedelta(days=1):
            opening = hours.next_opening(now, tz)
            if opening is not None:
                assert opening == _first_open_minute(hours, now, tz), (now, opening)
            now += timedelta(minutes=15)
