"""Closing a Deepgram stream ends cleanly, whatever state its socket is in, yet never swallows the
cancellation of whoever is closing it.

A stream whose socket reported an error (Deepgram's in-band ``Error``) has failed while its socket task
still runs; closing it cancels that task, and that task's cancellation is no failure of the caller's (the
stream's own failure is reported by ``interim``/``finalize``). A caller that is itself cancelled while it
waits for the socket to close must see its cancellation, and the socket must not outlive it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from parley.audio.frame import PCM16
from parley.providers.asr.deepgram import DeepgramRecognizer, DeepgramStream, ListenSettings
from parley.providers.errors import ProviderRejected
from tests.providers.deepgram import local_server
from tests.providers.deepgram.local_server import DeepgramLocal

KEY = "dg-local-key"
RATE = 16_000


def voice(seconds: float) -> PCM16:
    t = np.arange(int(seconds * RATE)) / RATE
    return np.round(0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype(np.int16)


class _ErringEar(local_server._Ear):
    """Reports an error for the first audio (as Deepgram does in-band) and keeps the socket open."""

    reported = False

    async def hear(self, data: bytes) -> bool:
        if not self.reported:
            self.reported = True
            await self.send({"type": "Error", "variant": "ServerError", "description": "could not decode"})
        return await super().hear(data)


class _LingeringEar(local_server._Ear):
    """Answers CloseStream but never closes the socket: it waits for the client to go away."""

    async def close(self, code: int, reason: str) -> None:
        if code != 1000:
            await super().close(code, reason)
            return
        while (await self.socket.receive())["type"] != "websocket.disconnect":
            pass
        self.call.close = (code, "client went away")
        self.server._note()


def stream_on(dg: DeepgramLocal, **options: Any) -> DeepgramStream:
    recognizer = DeepgramRecognizer(KEY, ListenSettings(endpointing_ms=None), base_url=dg.url, **options)
    return recognizer.open_stream()


async def failed_stream(dg: DeepgramLocal) -> DeepgramStream:
    """A stream that took Deepgram's error while its socket stays open."""
    stream = stream_on(dg, connect_timeout=5.0)
    await stream.push(voice(0.1))
    async with asyncio.timeout(5):
        while True:
            try:
                await stream.interim()
            except ProviderRejected:
                break
            await stream.wait_for_update()
    assert dg.listen_calls[0].close is None, "the socket is still open"
    return stream


async def test_closing_a_failed_stream_returns_and_its_failure_stays_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(local_server, "_Ear", _ErringEar)
    async with DeepgramLocal() as dg:
        stream = await failed_stream(dg)
        await stream.aclose()  # used to raise CancelledError: the cancelled socket task's, not ours
        await dg.until(lambda: dg.listen_calls[0].close is not None)
        with pytest.raises(ProviderRejected, match="could not decode"):
            await stream.finalize()
    assert dg.listen_calls[0].close is not None and dg.listen_calls[0].close[1] == "client went away"


async def test_a_caller_cancelled_while_closing_a_failed_stream_is_cancelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(local_server, "_Ear", _ErringEar)
    async with DeepgramLocal() as dg:
        stream = await failed_stream(dg)
        closing = asyncio.create_task(stream.aclose())
        await asyncio.sleep(0)  # it starts closing: the socket task takes a few more turns to end
        assert not closing.done()
        closing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing
        await dg.until(lambda: dg.listen_calls[0].close is not None)
    assert closing.cancelled()


async def test_a_caller_cancelled_while_waiting_for_the_close_is_cancelled_and_the_socket_closes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(local_server, "_Ear", _LingeringEar)
    async with DeepgramLocal() as dg:
        stream = stream_on(dg, connect_timeout=30.0)
        await stream.push(voice(0.1))
        await dg.until(lambda: bool(dg.listen_calls) and "audio" in dg.listen_calls[0].received)
        closing = asyncio.create_task(stream.aclose())
        await dg.until(lambda: "CloseStream" in dg.listen_calls[0].received)
        closing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing
        await dg.until(lambda: dg.listen_calls[0].close is not None)  # the socket did not outlive it
    assert dg.listen_calls[0].close == (1000, "client went away")
