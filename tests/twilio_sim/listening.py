"""What a party in a simulated conference heard over the next half second, and whether a tone was in it:
shared by the conference simulator's tests and the coached-call tests that drive it over REST."""

from __future__ import annotations

from typing import Any

from parley.audio.mixer import heard_tone_dbfs, tone_dbfs
from parley.twilio_sim.conference import SimConference, SimParticipant

HEARD = -30.0
"""A voice that reached the ear reads well above this (each tone is about -15 dBFS)."""
SILENT = -60.0
"""… and one that did not, below this."""
WINDOW = 25
"""Ticks (20 ms each) measured after each change: half a second of audio."""


async def heard_next(conference: SimConference, *listeners: SimParticipant) -> list[Any]:
    """What each listener hears over the next WINDOW ticks, all of them mixed after this moment."""
    mark = conference.tick
    await conference.wait_tick(mark + WINDOW)
    return [listener.heard_audio(mark, mark + WINDOW) for listener in listeners]


def tone_level(pcm: Any, hz: float) -> float:
    """The tone's level over the whole span: its floor under other sounds is low, to show it is absent."""
    return tone_dbfs(pcm, 8000, hz)


def heard_level(pcm: Any, hz: float) -> float:
    """The tone's level packet by packet: a late packet's phase jump does not hide a tone that is there."""
    return heard_tone_dbfs(pcm, 8000, hz)
