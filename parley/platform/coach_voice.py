"""The AI coach's voice in a coached room: the hints it whispers, synthesized and fed to its own leg in real
time, one at a time, and the ear that leg hears the room with. Apart from ``coached_room`` because pacing
speech into a leg is a job of its own, not the room's bookkeeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import structlog

from parley.analysis.coach import Hint
from parley.audio.frame import PCM16, AudioFrame
from parley.engine.events import now
from parley.providers.tts.base import SpeechSynthesizer
from parley.rooms import ROOM_RATE, TICK_S, Room, UnknownParticipant

log = structlog.get_logger("parley.platform.coach_voice")

WHISPER_QUEUE = 4
"""Hints waiting to be whispered; past it a hint is shown, not said (a whisper minutes late helps no one)."""

Spawn = Callable[[Awaitable[Any], str], asyncio.Task[Any]]
"""Starts a task the room owns (and cancels when it ends)."""


class Discard:
    """The AI coach's ear: it hears the room (the mix is made for every leg) and throws it away."""

    sample_rate = ROOM_RATE

    async def write(self, frame: AudioFrame) -> None:
        return None

    async def clear(self) -> None:
        return None


class CoachVoice:
    """Says hints on the leg ``leg_id`` of ``room``, in the order given, with the room's ``tts``."""

    def __init__(self, room: Room, leg_id: str, tts: SpeechSynthesizer, spawn: Spawn) -> None:
        self._room = room
        self._leg_id = leg_id
        self._tts = tts
        self._spawn = spawn
        self._whispers: asyncio.Queue[str] = asyncio.Queue(WHISPER_QUEUE)
        self.task: asyncio.Task[None] | None = None
        """The whisperer, started by the first hint said (the room cancels it at its end)."""

    def say(self, hint: Hint) -> None:
        """Queue the hint's text to be whispered; dropped (logged) when ``WHISPER_QUEUE`` already wait."""
        try:
            self._whispers.put_nowait(hint.text)
        except asyncio.QueueFull:
            log.info(
                "whisper queue full; this hint is shown, not said",
                room_id=self._room.id,
                trigger=hint.trigger,
            )
            return
        if self.task is None:
            self.task = self._spawn(self._whisper(), f"room-whisper-{self._room.id}")

    async def _whisper(self) -> None:
        """The AI coach's voice: each hint synthesized and fed to its leg in real time, one at a time."""
        while True:
            text = await self._whispers.get()
            try:
                await self._speak(text)
            except asyncio.CancelledError:
                raise
            except Exception:  # this whisper is lost; the card was shown, the next one may work
                log.exception("whispering a hint failed", room_id=self._room.id)

    async def _speak(self, text: str) -> None:
        """Synthesized audio goes to the AI coach's leg 20 ms at a time on the monotonic clock, as a
        microphone would deliver it, starting with the first chunk the voice gives."""
        tts = self._tts
        rate = tts.sample_rate
        step = max(1, round(rate * TICK_S))
        pending: PCM16 = np.zeros(0, np.int16)
        start: float | None = None
        sent = 0
        async for chunk in tts.synthesize(text):
            pending = np.concatenate([pending, chunk]) if pending.size else chunk
            while pending.size >= step:
                frame, pending = pending[:step], pending[step:]
                start = start if start is not None else now()
                await self._feed_paced(frame, rate, start + sent * TICK_S)
                sent += 1
        if pending.size:
            await self._feed_paced(pending, rate, (start if start is not None else now()) + sent * TICK_S)

    async def _feed_paced(self, pcm: PCM16, rate: int, at: float) -> None:
        delay = at - now()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            leg = self._room.leg(self._leg_id)
        except UnknownParticipant:  # removed by a supervisor mid-whisper
            return
        leg.feed(AudioFrame(pcm, rate))
