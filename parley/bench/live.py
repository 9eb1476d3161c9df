"""``parley bench live``: the latency benchmark's spoken questions, over the network, as a user hears it.

The server runs in its own process with the embedded stack. This process is the remote user: it
streams the questions in real time over a WebSocket on loopback, and plays the agent's audio through a
model of a client's playout (each reply starts playing ``PLAYOUT_MARGIN_S`` after its first frame
arrives and continues on the server's timeline; ``audio.clear`` cuts it at once). Voice-to-voice and
barge-in latency are measured on this side only, from the question's own signal to what the speaker
would play, exactly as in ``parley bench latency``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from websockets.exceptions import ConnectionClosed

from parley.audio.frame import PCM16
from parley.audio.resample import resample
from parley.bench.load import PLAYOUT_MARGIN_S
from parley.bench.server_process import announce_port, server_process
from parley.engine.events import now
from parley.simulate import TurnResult, UserTurn, percentile
from parley.simulation import Clip, agent_silent_at, voiced_span
from parley.transports.ws_client import LiveClient, ReceivedFrame, StreamingMic

if TYPE_CHECKING:
    from parley.transports.webrtc_client import RtcClient

RATE = 16000


class RemoteSpeaker:
    """What a browser would play: frames on the server's timeline, anchored at a reply's first arrival."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.clips: list[Clip] = []
        self.reply_starts: list[float] = []
        """When each reply (a new run of play times) started playing here."""
        self.new_reply = asyncio.Event()
        self.underruns = 0
        self._anchor: tuple[float, float] | None = None  # (server play time, client start time)
        self._end: float | None = None

    def on_frame(self, frame: ReceivedFrame) -> None:
        play = frame.play_ms / 1000
        if self._anchor is None or self._end is None or abs(play - self._end) > 0.001:
            self._anchor = (play, frame.arrival + PLAYOUT_MARGIN_S)
            self.reply_starts.append(self._anchor[1])
            self.new_reply.set()
        start = self._anchor[1] + play - self._anchor[0]
        if start < frame.arrival:  # arrived too late to play on time: the playout slips
            self.underruns += 1
            self._anchor = (play, frame.arrival)
            start = frame.arrival
        self._end = play + len(frame.pcm) / self.sample_rate
        self.clips.append(Clip(start, frame.pcm))

    def playing(self, at: float) -> bool:
        return any(c.start <= at < c.start + len(c.pcm) / self.sample_rate for c in self.clips[-20:])

    def clear(self, at: float) -> None:
        kept: list[Clip] = []
        for clip in self.clips:
            if clip.start >= at:
                continue
            played = int((at - clip.start) * self.sample_rate)
            kept.append(clip if played >= len(clip.pcm) else Clip(clip.start, clip.pcm[:played]))
        self.clips = kept
        self._anchor = self._end = None


class RemoteConversation:
    def __init__(self, url: str) -> None:
        self.url = url
        self.speaker = RemoteSpeaker(RATE)
        self.client: LiveClient | RtcClient | None = None
        self.paired_v2v: list[tuple[float, float]] = []
        """(as heard here, as the server measured it) for each answered turn: their difference is
        what the wire and the client's playout add, free of the run-to-run noise of the models."""

    def _on_message(self, message: dict[str, Any]) -> None:
        if message.get("type") == "audio.clear":
            self.speaker.clear(message["_arrival"])

    async def run(self, turns: list[UserTurn], answer_timeout_s: float = 30.0) -> list[TurnResult]:
        client = await LiveClient.connect(
            self.url, on_audio=self.speaker.on_frame, on_message=self._on_message
        )
        self.client = client
        started = await client.start(sample_rate=RATE, output_rate=RATE)
        if started["type"] != "session.started":
            raise RuntimeError(f"session refused: {started}")
        mic = StreamingMic(client, RATE)
        streaming = asyncio.create_task(mic.run())
        try:
            results = await self._play_turns(turns, mic.say, answer_timeout_s)
        finally:
            streaming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await streaming
            with contextlib.suppress(ConnectionClosed, OSError):  # the server may have closed first
                await client.send({"type": "end"})
            await client.close()
        return results

    async def _play_turns(
        self, turns: list[UserTurn], say: Callable[[PCM16], Awaitable[float]], answer_timeout_s: float
    ) -> list[TurnResult]:
        """Say each turn in real time, as the in-process bench does, and score what the client heard."""
        assert self.client is not None
        results: list[TurnResult] = []
        await self._wait_quiet(answer_timeout_s)
        for index, turn in enumerate(turns):
            mark = len(self.client.messages)
            pcm = resample(turn.audio.pcm, turn.audio.sample_rate, RATE)
            start = await say(pcm)
            upcoming = turns[index + 1] if index + 1 < len(turns) else None
            if upcoming is not None and upcoming.barge_in_at_ms is not None:
                await self._wait_agent_audio(start, answer_timeout_s)
                await asyncio.sleep(upcoming.barge_in_at_ms / 1000)
            else:
                await self._wait_quiet(answer_timeout_s)
            results.append(self._score(mark, start, pcm))
        return results

    async def _wait_quiet(self, limit_s: float) -> None:
        """Until the agent has answered and finished (as ``Conversation`` waits for ``Session.idle``):
        the server says it is idle twice, 0.3 s apart, and nothing is left to play here."""
        deadline = now() + limit_s
        await asyncio.sleep(0.3)
        while now() < deadline:
            if await self._idle():
                await asyncio.sleep(0.3)
                if await self._idle():
                    return
            await asyncio.sleep(0.05)

    async def _idle(self) -> bool:
        assert self.client is not None
        mark = len(self.client.messages)
        await self.client.send({"type": "ping", "id": "idle?"})
        pong = await self.client.wait_for("pong", 5.0, since=mark, id="idle?")
        return bool(pong.get("idle")) and not self.speaker.playing(now())

    async def _wait_agent_audio(self, since: float, limit_s: float) -> None:
        """Until a reply that started after ``since`` plays here."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit_s):
                while not any(t >= since for t in self.speaker.reply_starts[-5:]):
                    self.speaker.new_reply.clear()
                    await self.speaker.new_reply.wait()

    def _score(self, mark: int, start: float, pcm: PCM16) -> TurnResult:
        assert self.client is not None
        onset, speech_end = voiced_span(pcm, RATE, start)
        messages = self.client.messages[mark:]
        user = " ".join(m["text"] for m in messages if m["type"] == "transcript" and m.get("final"))
        agent = " ".join(m["text"] for m in messages if m["type"] == "agent.text")
        interrupted = any(
            m["type"] == "agent.cancelled" and m.get("heard_text") is not None and m["reason"] == "barge_in"
            for m in messages
        )
        replies = [t for t in self.speaker.reply_starts if t >= start]
        v2v = round((replies[0] - speech_end) * 1000, 1) if replies else None
        server = next(
            (m["voice_to_voice_ms"] for m in messages if m.get("voice_to_voice_ms") is not None), None
        )
        if v2v is not None and server is not None and v2v > 0:
            self.paired_v2v.append((v2v, float(server)))
        stop = agent_silent_at(self.speaker.clips, onset, RATE)
        bargein = round((stop - onset) * 1000, 1) if stop is not None else None
        return TurnResult(user, agent, v2v, interrupted, v2v is not None and v2v < 0, bargein)


def serve_embedded() -> None:
    """The server side: the embedded stack on a free port; prints the port once the models are warm."""
    from parley.config import Settings
    from parley.server.app import create_app
    from parley.server.lifecycle import DrainingServer, bound_port, make_server

    settings = Settings()
    app = create_app(settings)

    async def announce(server: DrainingServer) -> None:
        await app.state.runtime.engines.ready.wait()
        announce_port(bound_port(server))

    make_server(app, settings, host="127.0.0.1", port=0, log_level="warning", on_started=announce).run()


async def run_live_bench(progress: Any = None, transport: str = "ws") -> dict[str, Any]:
    from parley.bench.latency import build_turns
    from parley.bench.voice import CallerVoice

    say = progress if progress is not None else (lambda *_: None)
    say("synthesizing the questions …")
    turns = await asyncio.to_thread(build_turns, CallerVoice())
    say("starting the server with the embedded stack (a separate process) …")
    with server_process(["-m", "parley.bench.live", "--serve"]) as (_, port):
        conversation: RemoteConversation
        if transport == "webrtc":
            from parley.bench.live_webrtc import RtcConversation

            say(f"streaming {len(turns)} user turns over WebRTC (offer to http://127.0.0.1:{port}) …")
            conversation = RtcConversation(f"http://127.0.0.1:{port}")
        else:
            say(f"streaming {len(turns)} user turns over ws://127.0.0.1:{port} in real time …")
            conversation = RemoteConversation(f"ws://127.0.0.1:{port}/v1/sessions/ws")
        results = await conversation.run(turns)
    v2v = [t.v2v_ms for t in results if t.v2v_ms is not None]
    bargein = [t.bargein_ms for t in results if t.bargein_ms is not None]
    return {
        "transport": transport,
        "turns": [asdict(t) for t in results],
        "v2v_p50_ms": percentile(v2v, 50),
        "v2v_p90_ms": percentile(v2v, 90),
        "bargein_p50_ms": percentile(bargein, 50),
        "bargein_p90_ms": percentile(bargein, 90),
        "server_v2v_p50_ms": percentile([s for _, s in conversation.paired_v2v], 50),
        "client_minus_server_v2v_p50_ms": percentile([c - s for c, s in conversation.paired_v2v], 50),
        "client_minus_server_v2v_p90_ms": percentile([c - s for c, s in conversation.paired_v2v], 90),
        "premature_cutins": sum(t.premature for t in results),
        "playout_underruns": conversation.speaker.underruns,
        "turn_count": len(results),
    }


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve_embedded()
    else:
        sys.exit("usage: python -m parley.bench.live --serve (use `parley bench live`)")
