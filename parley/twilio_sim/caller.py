"""A phone caller as Parley sees it through Twilio: the Media Streams client side of a call.

It behaves towards Parley's ``/twilio/stream`` as Twilio does: a signed WebSocket upgrade, then
``connected``, ``start``, a ``media`` message every 20 ms in real time for the whole call (silence
between utterances: Twilio streams the line continuously), ``dtmf`` on a key press and ``stop`` at
hang-up. Audio coming back is played out as Twilio's buffer does: queued, played at 8 kHz real time
from arrival, ``mark`` echoed when playout reaches it, ``clear`` dropping what has not played and
echoing the pending marks at once. What the caller heard is kept on Parley's clock
(``time.monotonic``), so barge-in and latency are measured from what reached the ear.

Message shapes: https://www.twilio.com/docs/voice/media-streams/websocket-messages
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import secrets
from collections import deque
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import structlog
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped, unused-ignore]
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from parley.audio.codecs import ulaw_decode, ulaw_encode
from parley.audio.frame import PCM16
from parley.audio.resample import resample
from parley.engine.events import now
from parley.simulation import FRAME_S, Clip, agent_silent_at, mix_stereo, voiced_span
from parley.twilio_sim.network import ImpairedLink, NetworkProfile, NetworkStats, Scheduled

log = structlog.get_logger("parley.twilio_sim")

SAMPLE_RATE = 8000
"""Media Streams audio is always μ-law at 8 kHz, mono."""
FRAME_SAMPLES = int(SAMPLE_RATE * FRAME_S)  # 160 μ-law bytes per media message, as Twilio sends
SIGNATURE_HEADER = "X-Twilio-Signature"
DTMF_DIGITS = frozenset("0123456789*#")


class CallEnded(RuntimeError):
    """The line went down before the caller could finish (the far end hung up, or the caller did)."""


@dataclass(frozen=True, slots=True)
class MarkEcho:
    name: str
    at: float
    """When the echo was queued for sending (monotonic)."""
    cleared: bool
    """Echoed because a ``clear`` emptied the buffer: the audio before it was never heard."""


def new_sid(prefix: str) -> str:
    """A Twilio-shaped SID: two letters and 32 hex digits (CA… calls, MZ… streams, AC… accounts)."""
    return prefix + secrets.token_hex(16)


def stream_signature(url: str, auth_token: str) -> str:
    """What Twilio puts in ``X-Twilio-Signature`` on the upgrade: the stream URL signed with no params."""
    signature: str = RequestValidator(auth_token).compute_signature(url, {})
    return signature


# Twilio -> server shapes, https://www.twilio.com/docs/voice/media-streams/websocket-messages
# ("WebSocket messages from Twilio"). Numeric fields of media/sequence are strings, as Twilio sends them.


def connected_message() -> dict[str, Any]:
    return {"event": "connected", "protocol": "Call", "version": "1.0.0"}


def start_message(
    seq: int,
    *,
    account_sid: str,
    call_sid: str,
    stream_sid: str,
    custom_parameters: Mapping[str, str],
) -> dict[str, Any]:
    return {
        "event": "start",
        "sequenceNumber": str(seq),
        "start": {
            "accountSid": account_sid,
            "streamSid": stream_sid,
            "callSid": call_sid,
            "tracks": ["inbound"],
            "customParameters": dict(custom_parameters),
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": SAMPLE_RATE, "channels": 1},
        },
        "streamSid": stream_sid,
    }


def media_message(seq: int, stream_sid: str, chunk: int, timestamp_ms: int, ulaw: bytes) -> dict[str, Any]:
    return {
        "event": "media",
        "sequenceNumber": str(seq),
        "media": {
            "track": "inbound",
            "chunk": str(chunk),
            "timestamp": str(timestamp_ms),
            "payload": base64.b64encode(ulaw).decode("ascii"),
        },
        "streamSid": stream_sid,
    }


def dtmf_message(seq: int, stream_sid: str, digit: str) -> dict[str, Any]:
    return {
        "event": "dtmf",
        "streamSid": stream_sid,
        "sequenceNumber": str(seq),
        "dtmf": {"track": "inbound_track", "digit": digit},
    }


def mark_echo_message(seq: int, stream_sid: str, name: str) -> dict[str, Any]:
    return {"event": "mark", "sequenceNumber": str(seq), "streamSid": stream_sid, "mark": {"name": name}}


def stop_message(seq: int, stream_sid: str, *, account_sid: str, call_sid: str) -> dict[str, Any]:
    return {
        "event": "stop",
        "sequenceNumber": str(seq),
        "stop": {"accountSid": account_sid, "callSid": call_sid},
        "streamSid": stream_sid,
    }


class _Voice:
    """The caller's mouth: queued clips when there are some, silence otherwise, 20 ms at a time."""

    def __init__(self) -> None:
        self.queue: deque[tuple[PCM16, asyncio.Future[float | None]]] = deque()
        self._current: PCM16 = np.zeros(0, np.int16)
        self._silence: PCM16 = np.zeros(FRAME_SAMPLES, np.int16)

    def next_frame(self, t: float) -> PCM16:
        """The frame whose first sample is captured at ``t``."""
        if not len(self._current) and self.queue:
            self._current, marker = self.queue.popleft()
            if not marker.done():
                marker.set_result(t)
        if not len(self._current):
            return self._silence
        frame, self._current = self._current[:FRAME_SAMPLES], self._current[FRAME_SAMPLES:]
        if len(frame) < FRAME_SAMPLES:
            frame = np.concatenate([frame, self._silence[: FRAME_SAMPLES - len(frame)]])
        return frame

    def hang_up(self) -> None:
        """Wake everyone waiting on a clip: it will never be said (``None`` means the line is down)."""
        while self.queue:
            _, marker = self.queue.popleft()
            if not marker.done():
                marker.set_result(None)


class SimulatedCaller:
    """One phone call's Media Stream, from Twilio's side.

    ``async with SimulatedCaller(url, auth_token=…, custom_parameters={"call_id": …}) as caller:`` dials;
    leaving the block hangs up if the call is still up.
    """

    def __init__(
        self,
        url: str,
        *,
        auth_token: str | None,
        account_sid: str | None = None,
        call_sid: str | None = None,
        stream_sid: str | None = None,
        custom_parameters: Mapping[str, str] | None = None,
        network: NetworkProfile | None = None,
        signature_url: str | None = None,
        open_timeout: float = 10.0,
    ) -> None:
        """``auth_token`` None sends no signature (to test rejection); ``signature_url`` is the URL Twilio
        would sign when it differs from the one dialed (the public wss URL of a server behind a proxy)."""
        self.url = url
        self.account_sid = account_sid or new_sid("AC")
        self.call_sid = call_sid or new_sid("CA")
        self.stream_sid = stream_sid or new_sid("MZ")
        self.custom_parameters = dict(custom_parameters or {})
        self.network = network or NetworkProfile()
        self.heard: list[Clip] = []
        """What reached the caller's ear: 8 kHz PCM with the time its first sample played."""
        self.spoken: list[Clip] = []
        """What the caller said: 8 kHz PCM with the time its first sample was captured."""
        self.mark_echoes: list[MarkEcho] = []
        self.clears: list[float] = []
        self.media_received = 0
        self.protocol_errors = 0
        self.started_at: float | None = None
        """When ``start`` was sent: media timestamps count from here."""
        self.ended_by: Literal["caller", "server"] | None = None
        self._auth_token = auth_token
        self._signature_url = signature_url or url
        self._open_timeout = open_timeout
        self._link: ImpairedLink[str] = ImpairedLink(self.network)
        self._voice = _Voice()
        self._outbox: asyncio.Queue[Scheduled[str]] = asyncio.Queue()
        self._seq = 0
        self._play_end = 0.0
        self._marks: deque[tuple[float, str]] = deque()
        self._marks_changed = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._media: asyncio.Task[None] | None = None
        self._helpers: list[asyncio.Task[None]] = []
        self._log = log.bind(call_sid=self.call_sid, stream_sid=self.stream_sid)

    # -- the call ------------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Dial as Twilio does for ``<Connect><Stream>``: signed upgrade, ``connected``, ``start``."""
        headers: dict[str, str] = {}
        if self._auth_token is not None:
            headers[SIGNATURE_HEADER] = stream_signature(self._signature_url, self._auth_token)
        self._ws = await connect(
            self.url,
            additional_headers=headers,
            compression=None,
            max_size=1 << 20,
            open_timeout=self._open_timeout,
            ping_interval=None,
            close_timeout=2.0,
            proxy=None,  # Twilio dials the stream URL directly
        )
        await self._ws.send(json.dumps(connected_message()))
        start = start_message(
            self._next_seq(),
            account_sid=self.account_sid,
            call_sid=self.call_sid,
            stream_sid=self.stream_sid,
            custom_parameters=self.custom_parameters,
        )
        await self._ws.send(json.dumps(start))
        self.started_at = now()
        self._reader = self._spawn(self._read(self._ws), "read")
        self._media = self._spawn(self._stream_audio(self.started_at), "media")
        self._helpers = [self._spawn(self._send(self._ws), "send"), self._spawn(self._echo_marks(), "marks")]

    async def __aenter__(self) -> SimulatedCaller:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.closed:
            await self._shutdown()
        else:
            await self.hang_up()

    @property
    def closed(self) -> bool:
        return self._reader is None or self._reader.done()

    async def say(self, pcm: PCM16, rate: int) -> float:
        """Speak ``pcm`` after anything queued before it, in real time; returns once its last frame was
        sent, with the time its first sample was captured."""
        self._require_open()
        if rate != SAMPLE_RATE:
            pcm = resample(pcm, rate, SAMPLE_RATE)
        loop = asyncio.get_running_loop()
        started: asyncio.Future[float | None] = loop.create_future()
        done: asyncio.Future[float | None] = loop.create_future()
        self._voice.queue.append((pcm, started))
        self._voice.queue.append((np.zeros(0, np.int16), done))  # resolves once the clip has been sent
        start = await started
        if start is not None:
            self.spoken.append(Clip(start, pcm))
        if start is None or await done is None:
            raise CallEnded(f"call {self.call_sid} ended while the caller was speaking")
        return start

    async def press(self, digit: str) -> None:
        """A key press: Twilio reports it as a ``dtmf`` message, the audio stream carries on."""
        if digit not in DTMF_DIGITS:
            raise ValueError(f"not a DTMF key: {digit!r}")
        self._require_open()
        self._queue_control(dtmf_message(self._next_seq(), self.stream_sid, digit))

    async def hang_up(self, limit_s: float = 3.0) -> None:
        """End the call from the caller's side: what is on its way is sent, then ``stop``, then close."""
        if self.closed or self.ended_by is not None:
            await self._shutdown()
            return
        self.ended_by = "caller"
        self._unplayed_lost(now())  # the phone is down: nothing more reaches the ear
        if self._media is not None:
            await self._stop_task(self._media)  # no more media
        for item in self._link.flush(now()):
            self._outbox.put_nowait(item)
        self._queue_control(
            stop_message(
                self._next_seq(), self.stream_sid, account_sid=self.account_sid, call_sid=self.call_sid
            )
        )
        assert self._reader is not None
        drained = asyncio.create_task(self._outbox.join())
        try:
            await asyncio.wait({drained, self._reader}, timeout=limit_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await self._stop_task(drained)
        await self._shutdown()

    def abort(self) -> None:
        """Drop the connection without ``stop`` or a closing handshake, as a lost carrier leg would."""
        if self._ws is not None and not self.closed:
            self.ended_by = "caller"
            self._ws.transport.abort()

    async def wait_closed(self, limit_s: float | None = None) -> None:
        """Wait for the line to go down (the server closing the stream ends the call at Twilio)."""
        if self._reader is None:
            return
        async with asyncio.timeout(limit_s):
            await asyncio.shield(self._reader)
        await self._shutdown()

    # -- measurements --------------------------------------------------------------------------------

    @property
    def network_stats(self) -> NetworkStats:
        return self._link.stats

    @property
    def marks_echoed(self) -> int:
        """Marks echoed because their audio played."""
        return sum(not e.cleared for e in self.mark_echoes)

    @property
    def marks_cleared(self) -> int:
        """Marks echoed early because a ``clear`` dropped the audio before them."""
        return sum(e.cleared for e in self.mark_echoes)

    @property
    def clears_received(self) -> int:
        return len(self.clears)

    def heard_audio(self, since: float, until: float) -> PCM16:
        """What the caller heard between two times, silence where nothing played (8 kHz)."""
        track, _ = mix_stereo(self.heard, [], since, until, SAMPLE_RATE)
        return track

    def silent_at(self, t: float) -> float | None:
        """If agent audio was playing at ``t``, when that unbroken run of it stopped; else None."""
        return agent_silent_at(self.heard, t, SAMPLE_RATE)

    def heard_voice(self, since: float, until: float | None = None) -> tuple[float, float] | None:
        """When heard speech (not the line's silence) started and stopped between two times."""
        end = until if until is not None else self._play_end
        if end <= since:
            return None
        audio = self.heard_audio(since, end)
        if not np.any(audio):
            return None
        start, stop = voiced_span(audio, SAMPLE_RATE, since)
        return (start, stop) if stop > start else None  # a few samples only: not (yet) speech

    # -- internals -----------------------------------------------------------------------------------

    def _require_open(self) -> None:
        if self._reader is None:
            raise CallEnded("the caller has not dialed yet")
        if self.closed or self.ended_by is not None:
            raise CallEnded(f"call {self.call_sid} has ended")

    def _spawn(self, work: Coroutine[Any, Any, None], role: str) -> asyncio.Task[None]:
        task = asyncio.create_task(work, name=f"twilio-sim-{role}-{self.call_sid}")
        task.add_done_callback(self._on_task_done)
        return task

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        """A helper that dies takes the line down with it, loudly, rather than leaving a mute call."""
        if task.cancelled() or task.exception() is None:
            return
        self._log.error("twilio_sim.task_failed", task=task.get_name(), exc_info=task.exception())
        self.abort()

    def _next_seq(self) -> int:
        self._seq += 1  # one counter over every message after `connected`, as Twilio numbers them
        return self._seq

    def _queue_control(self, message: dict[str, Any]) -> None:
        """Control messages skip the impairments but queue behind media already on its way (one TCP)."""
        self._outbox.put_nowait(Scheduled(now(), json.dumps(message)))

    async def _stream_audio(self, t0: float) -> None:
        """A media message every 20 ms for as long as the call lasts, sent once its audio was captured."""
        chunk = 0
        while True:
            t = t0 + chunk * FRAME_S
            frame = self._voice.next_frame(t)
            due = t + FRAME_S
            delay = due - now()
            if delay > 0:
                await asyncio.sleep(delay)
            message = media_message(
                self._next_seq(), self.stream_sid, chunk + 1, chunk * 20, ulaw_encode(frame)
            )
            for item in self._link.push(json.dumps(message), due):
                self._outbox.put_nowait(item)
            chunk += 1

    async def _send(self, ws: ClientConnection) -> None:
        while True:
            item = await self._outbox.get()
            try:
                delay = item.send_at - now()
                if delay > 0:
                    await asyncio.sleep(delay)
                await ws.send(item.packet)
            except ConnectionClosed:
                return  # the reader notices the close and winds the call down
            finally:
                self._outbox.task_done()

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for data in ws:
                if isinstance(data, bytes):
                    self._reject("binary frame", size=len(data))
                    continue
                self._on_message(data)
        except ConnectionClosed as exc:
            self._log.info("twilio_sim.closed_abnormally", code=exc.rcvd.code if exc.rcvd else None)
        finally:
            if self.ended_by is None:
                self.ended_by = "server"
            self._unplayed_lost(now())  # Twilio drops what it had not played when the stream ends
            self._voice.hang_up()
            for task in (self._media, *self._helpers):
                if task is not None:
                    task.cancel()  # nothing more can go out; _shutdown reaps them

    def _on_message(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            self._reject("not JSON", size=len(text))
            return
        if not isinstance(message, dict):
            self._reject("not a JSON object")
            return
        event = message.get("event")
        if message.get("streamSid") != self.stream_sid:
            self._reject("wrong or missing streamSid", message_event=event)
            return
        # Server -> Twilio shapes, same page ("Send messages to Twilio").
        if event == "media":
            media = message.get("media")
            payload = media.get("payload") if isinstance(media, dict) else None
            try:
                ulaw = base64.b64decode(payload, validate=True) if isinstance(payload, str) else None
            except binascii.Error:
                ulaw = None
            if not ulaw:
                self._reject("media without a valid base64 payload")
                return
            self._play(ulaw)
        elif event == "mark":
            mark = message.get("mark")
            name = mark.get("name") if isinstance(mark, dict) else None
            if not isinstance(name, str):
                self._reject("mark without a name")
                return
            self._marks.append((max(now(), self._play_end), name))
            self._marks_changed.set()
        elif event == "clear":
            self._clear()
        else:
            self._reject("unknown event", message_event=event)

    def _reject(self, reason: str, **context: Any) -> None:
        """Twilio ignores what it cannot use and the call goes on; the count lets a test see it."""
        self.protocol_errors += 1
        self._log.warning("twilio_sim.bad_message", reason=reason, **context)

    def _play(self, ulaw: bytes) -> None:
        if self.ended_by is not None:
            return  # the caller hung up: nobody listens any more
        pcm = ulaw_decode(ulaw)
        start = max(now(), self._play_end)
        self.heard.append(Clip(start, pcm))
        self._play_end = start + len(pcm) / SAMPLE_RATE
        self.media_received += 1

    def _clear(self) -> None:
        t = now()
        self.clears.append(t)
        self._unplayed_lost(t)
        while self._marks:
            due, name = self._marks.popleft()
            self._echo(name, cleared=due > t)
        self._marks_changed.set()

    def _unplayed_lost(self, t: float) -> None:
        """Audio queued to play after ``t`` never reaches the ear (a ``clear``, the line going down)."""
        while self.heard and self.heard[-1].start >= t:
            self.heard.pop()
        if self.heard:
            last = self.heard[-1]
            played = int((t - last.start) * SAMPLE_RATE)
            if played <= 0:
                self.heard.pop()
            elif played < len(last.pcm):
                self.heard[-1] = Clip(last.start, last.pcm[:played])
        self._play_end = min(self._play_end, t)

    def _echo(self, name: str, *, cleared: bool) -> None:
        self.mark_echoes.append(MarkEcho(name, now(), cleared))
        self._queue_control(mark_echo_message(self._next_seq(), self.stream_sid, name))

    async def _echo_marks(self) -> None:
        """Echo each mark when playout reaches it (its due time never moves later once queued)."""
        while True:
            self._marks_changed.clear()
            if not self._marks:
                await self._marks_changed.wait()
                continue
            due, name = self._marks[0]
            delay = due - now()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._marks_changed.wait(), delay)
                continue
            self._marks.popleft()
            self._echo(name, cleared=False)

    async def _shutdown(self) -> None:
        self._voice.hang_up()
        for task in (self._media, *self._helpers):
            if task is not None:
                await self._stop_task(task)
        if self._ws is not None:
            with contextlib.suppress(ConnectionClosed, OSError):
                await self._ws.close()
        if self._reader is not None:
            await self._stop_task(self._reader)

    @staticmethod
    async def _stop_task(task: asyncio.Task[Any]) -> None:
        """Cancel and reap; a failure was already logged by ``_on_task_done``."""
        task.cancel()
        await asyncio.wait({task})
