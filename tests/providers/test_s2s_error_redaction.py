"""A speech-to-speech provider's error never shows the key the adapter sent, nor another credential.

What OpenAI Realtime or an ElevenLabs agent says in an error reaches the session's log, its timeline and
the API. A server may quote what it was sent: the adapter's key (which only the adapter can recognise)
or a credential of another shape (``sk-…``). Each test drives the real adapter against the local server
its own tests use, made to say such a thing: mid-call (``EngineError``), at setup and as the reason a
connection closed (``ProviderUnavailable``), and with the key placed across the length kept, where
cutting before redacting would leave its first characters.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from parley.providers.errors import ProviderUnavailable
from parley.providers.s2s.base import EngineError, S2SEvent, S2SSetup
from parley.providers.s2s.elevenlabs_convai import ElevenLabsConvaiConnection, ElevenLabsConvaiEngine
from parley.providers.s2s.openai_realtime import OpenAIRealtimeEngine
from parley.redaction import MIN_FRAGMENT, REDACTED
from tests.providers.elevenlabs import local_convai_server
from tests.providers.elevenlabs.local_convai_server import LocalConvai
from tests.providers.realtime import local_server as realtime_server
from tests.providers.realtime.local_server import LocalRealtime

KEY = "Zq8vR3mK7pXw2nTb5YhL"
"""No credential shape (no ``sk-``, ``Bearer``, ``key:``): only knowing the value can hide it."""
OTHER = "sk-proj-Hh4Tq9Wm2Lx7Vb3Nc8Rf"
"""A credential the adapter does not know, in a shape that gives it away."""
QUOTING = f"request refused: the key {KEY} is not valid here (the proxy also saw {OTHER})"
AGENT = "agent_local_0001"
ERROR_CHARS = 300
"""What the adapters keep of a provider's error text (``parley.providers.s2s.base.ERROR_CHARS``)."""


def straddling(lead: str, limit: int = ERROR_CHARS) -> str:
    """Words that, after ``lead``, put ``KEY`` 10 characters before ``limit`` and end after it."""
    return "." * (limit - 10 - len(lead)) + KEY + " which was not accepted"


def assert_clean(text: str) -> None:
    assert KEY[:MIN_FRAGMENT] not in text, f"a piece of the key leaked: {text!r}"
    assert OTHER[:12] not in text, f"a credential leaked: {text!r}"
    assert len(text) <= ERROR_CHARS + 80, f"a provider's text is cut short: {text!r}"


async def first_error(events: AsyncIterator[S2SEvent]) -> EngineError:
    async with asyncio.timeout(5):
        async for event in events:
            if isinstance(event, EngineError):
                return event
    raise AssertionError("the connection ended without an error")


# --- OpenAI Realtime ------------------------------------------------------------------------------------


def realtime(server: LocalRealtime) -> OpenAIRealtimeEngine:
    return OpenAIRealtimeEngine(base_url=server.url, api_key=KEY, timeout_s=5.0)


async def test_realtime_error_quoting_the_key_and_a_credential_shows_neither() -> None:
    """The local server's error for an unknown function call repeats the call id it was given."""
    async with LocalRealtime([], [], api_key=KEY) as server:
        conn = await realtime(server).connect(S2SSetup("Be brief."))
        try:
            await conn.tool_result(QUOTING, "42")
            error = await first_error(conn.events())
        finally:
            await conn.aclose()
    assert error.code == "invalid_call_id"
    assert error.message.startswith("no function call 'request refused: the key ")
    assert error.message.count(REDACTED) == 2, error.message
    assert_clean(error.message)


async def test_realtime_error_with_the_key_across_the_cut_shows_no_piece_of_it() -> None:
    lead = "no function call '"  # what the local server puts before the call id
    call_id = straddling(lead)
    assert (lead + call_id)[:ERROR_CHARS].endswith(KEY[:10]), "cut first, ten characters would show"
    async with LocalRealtime([], [], api_key=KEY) as server:
        conn = await realtime(server).connect(S2SSetup("Be brief."))
        try:
            await conn.tool_result(call_id, "42")
            error = await first_error(conn.events())
        finally:
            await conn.aclose()
    assert error.message.startswith(lead + "....")
    assert len(error.message) <= ERROR_CHARS
    assert_clean(error.message)


class _RefusingSession(realtime_server._Connection):
    """Refuses ``session.update`` with an error that quotes the key (and another credential)."""

    async def session_update(self, event: dict[str, Any]) -> None:
        await self.error("invalid_request_error", "invalid_value", QUOTING, problem=False)


async def test_realtime_refused_session_does_not_show_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(realtime_server, "_Connection", _RefusingSession)
    async with LocalRealtime([], [], api_key=KEY) as server:
        with pytest.raises(ProviderUnavailable, match="refused the session: request refused") as caught:
            await realtime(server).connect(S2SSetup("Be brief."))
    assert_clean(str(caught.value))


# --- ElevenLabs Conversational AI -----------------------------------------------------------------------


class QuotingConvai(LocalConvai):
    """Fails as the local server does (an ``error`` message, then a close), saying ``failure`` and
    closing with a reason that quotes the key."""

    def __init__(self, failure: str, **options: Any) -> None:
        super().__init__(["Break, please."], [], api_key=KEY, fail_on="Break", **options)
        self.failure = failure


class _QuotingConversation(local_convai_server._Conversation):
    async def fail(self, code: int, error_type: str, message: str) -> None:
        assert isinstance(self.server, QuotingConvai)
        event = {"code": code, "message": self.server.failure, "error_type": error_type}
        await self.send("error", error_event=event)
        await self.ws.close(code, f"refused {KEY}")  # a close reason holds at most 123 bytes


@pytest.fixture
def quoting_conversations(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_convai_server, "_Conversation", _QuotingConversation)


def convai(server: LocalConvai) -> ElevenLabsConvaiEngine:
    return ElevenLabsConvaiEngine(AGENT, api_key=KEY, base_url=server.url, timeout_s=5.0)


def utterance() -> np.ndarray:
    """A tone the local server hears as a caller's turn, then the silence that ends it."""
    t = np.arange(int(0.6 * 16000)) / 16000
    voiced = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype(np.int16)
    return np.concatenate([np.zeros(1600, np.int16), voiced, np.zeros(8000, np.int16)])


async def failure_mid_call(server: LocalConvai) -> tuple[EngineError, ProviderUnavailable]:
    """The caller speaks, the agent fails: its error event, then how the connection ended."""
    conn: ElevenLabsConvaiConnection = await convai(server).connect(S2SSetup("Be brief."))
    seen: list[S2SEvent] = []
    try:
        events = conn.events()
        pcm = utterance()
        for offset in range(0, len(pcm), 320):
            await conn.send_audio(pcm[offset : offset + 320])
        with pytest.raises(ProviderUnavailable) as lost:
            async with asyncio.timeout(5):
                async for event in events:
                    seen.append(event)
    finally:
        await conn.aclose()
    return next(e for e in seen if isinstance(e, EngineError)), lost.value


@pytest.mark.usefixtures("quoting_conversations")
async def test_convai_error_and_close_reason_quoting_the_key_show_neither_it_nor_a_credential() -> None:
    async with QuotingConvai(QUOTING) as server:
        error, lost = await failure_mid_call(server)
    assert error.code == "llm_error"
    assert error.message.startswith("request refused: the key ")
    assert error.message.count(REDACTED) == 2, error.message
    assert_clean(error.message)
    assert "conversation lost: refused" in str(lost)
    assert_clean(str(lost))


@pytest.mark.usefixtures("quoting_conversations")
async def test_convai_error_with_the_key_across_the_cut_shows_no_piece_of_it() -> None:
    async with QuotingConvai(straddling("")) as server:
        error, _ = await failure_mid_call(server)
    assert error.message.startswith("....")
    assert len(error.message) <= ERROR_CHARS
    assert_clean(error.message)


@pytest.mark.usefixtures("quoting_conversations")
async def test_convai_setup_refusal_quoting_the_key_does_not_show_it() -> None:
    """The agent allows no prompt override: the server refuses the initiation, saying ``failure``."""
    async with QuotingConvai(QUOTING, allowed_overrides=frozenset()) as server:
        with pytest.raises(ProviderUnavailable, match="during setup: request refused") as caught:
            await convai(server).connect(S2SSetup("Be brief."))
    assert_clean(str(caught.value))
