"""``parley bench live --transport webrtc``: the same spoken questions and scoring as the WebSocket
variant (``live.py``), as a remote WebRTC client hears them.

Agent audio arrives as a continuous Opus stream (digital silence between replies), so a reply starts
where the first non-silent audio after the server's ``agent.audio started`` arrives, and it stops
where that audio does (pauses shorter than ``PAUSE_S`` inside a reply count as part of it). Each frame
plays ``PLAYOUT_MARGIN_S`` after it was decoded, as in the WebSocket variant.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import numpy as np
from aiortc.exceptions import InvalidStateError

from parley.audio.frame import PCM16
from parley.bench.live import RATE, RemoteConversation
from parley.bench.load import PLAYOUT_MARGIN_S
from parley.simulate import TurnResult, UserTurn
from parley.simulation import Clip
from parley.transports.webrtc import restrict_ice_to
from parley.transports.webrtc_client import RtcClient

PAUSE_S = 0.25
VOICED_RMS = 10.0
"""About -70 dBFS. The server's silence decodes to exact zeros; anything well above it is a reply, its
quiet start included (the WebSocket variant counts every frame of a reply, whatever it holds), but not
the codec's faint ringing after a cut."""


class RtcSpeaker:
    """The agent's track as the speaker would play it: voiced runs as clips, reply starts marked."""

    def __init__(self) -> None:
        self.clips: list[Clip] = []
        self.reply_starts: list[float] = []
        self.new_reply = asyncio.Event()
        self.underruns = 0
        self._reply_pending = False
        self._held: list[Clip] = []
        self._last_voiced_end: float | None = None

    def reply_announced(self) -> None:
        self._reply_pending = True

    def on_pcm(self, pcm: PCM16, arrival: float) -> None:
        clip = Clip(arrival + PLAYOUT_MARGIN_S, pcm)
        if float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) < VOICED_RMS:
            if self._last_voiced_end is not None and clip.start - self._last_voiced_end <= PAUSE_S:
                self._held.append(clip)
            return
        if self._last_voiced_end is not None and clip.start - self._last_voiced_end <= PAUSE_S:
            self.clips.extend(self._held)  # a pause inside the reply: it plays on
        self._held = []
        if self._reply_pending:
            self._reply_pending = False
            self.reply_starts.append(clip.start)
            self.new_reply.set()
        self.clips.append(clip)
        self._last_voiced_end = clip.start + len(pcm) / RATE

    def playing(self, at: float) -> bool:
        return self._last_voiced_end is not None and at < self._last_voiced_end + PAUSE_S


class RtcConversation(RemoteConversation):
    def __init__(self, base_url: str) -> None:
        super().__init__(base_url)
        self.rtc_speaker = RtcSpeaker()
        self.speaker = self.rtc_speaker  # type: ignore[assignment]

    def _on_message(self, message: dict[str, Any]) -> None:
        if message.get("type") == "agent.audio" and message.get("status") == "started":
            self.rtc_speaker.reply_announced()

    async def run(self, turns: list[UserTurn], answer_timeout_s: float = 30.0) -> list[TurnResult]:
        restrict_ice_to(("127.0.0.1",))
        client = await RtcClient.connect(
            self.url, on_audio=self.rtc_speaker.on_pcm, on_message=self._on_message, output_rate=RATE
        )
        self.client = client
        try:
            results = await self._play_turns(turns, client.say, answer_timeout_s)
        finally:
            with contextlib.suppress(InvalidStateError, OSError):  # the channel may have closed first
                await client.send({"type": "end"})
            await asyncio.sleep(0.2)
            await client.close()
        return results
