"""What was heard at a barge-in, to the character, with the ElevenLabs voice's alignment."""

from __future__ import annotations

import asyncio

import pytest

from parley.audio.frame import AudioFrame
from parley.engine import reply as reply_module
from parley.engine.context import ConversationContext
from parley.engine.events import EventType
from parley.engine.reply import Reply, ReplyDeps, ReplySettings
from parley.engine.tools import ToolRegistry
from parley.providers.llm.scripted import ScriptedModel, ScriptRule
from parley.providers.tts.elevenlabs import ElevenLabsSynthesizer
from parley.providers.tts.phrase_cache import PhraseCache
from parley.simulate import UserTurn
from tests.engine.harness import agent, converse, speech, stack
from tests.providers.elevenlabs.local_server import LocalElevenLabs

ANSWER = "Our opening hours are nine to five."


class VirtualClock:
    """The playout's clock, moved only by the playout's own waits (as in tests/engine/test_playout.py)."""

    def __init__(self) -> None:
        self.t = 1000.0

    def now(self) -> float:
        return self.t

    async def sleep_until(self, deadline: float) -> None:
        self.t = max(self.t, deadline)
        await asyncio.sleep(0)


class BargingListener:
    """An output that barges in (pauses the reply) as the frame ``cut_s`` into the reply is written."""

    def __init__(self, rate: int, clock: VirtualClock, cut_s: float) -> None:
        self.sample_rate = rate
        self.clock = clock
        self.cut_s = cut_s
        self.reply: Reply | None = None
        self.start: float | None = None
        self.barged = asyncio.Event()

    async def write(self, frame: AudioFrame) -> None:
        if self.start is None:
            self.start = frame.timestamp
        if frame.timestamp - self.start >= self.cut_s - 1e-9 and self.reply is not None:
            self.reply.pause()  # paused at this frame's play time: it and what follows are unheard
            self.barged.set()

    async def clear(self) -> None:
        pass


async def heard_at(tts: PhraseCache, cut_s: float, rate: int, monkeypatch: pytest.MonkeyPatch) -> str:
    clock = VirtualClock()
    monkeypatch.setattr(reply_module, "now", clock.now)
    monkeypatch.setattr(reply_module, "_sleep_until", clock.sleep_until)
    llm = ScriptedModel([])
    listener = BargingListener(rate, clock, cut_s)
    deps = ReplyDeps(
        llm,
        tts,
        ToolRegistry(),
        ConversationContext("", [], 500, llm.count_tokens),
        listener,
        lambda kind, **data: None,
        ReplySettings(),
        lambda _: None,
    )
    reply = Reply(deps, canned_text=ANSWER)
    listener.reply = reply
    reply.commit()
    task = reply.start()
    await asyncio.wait_for(listener.barged.wait(), 10)
    outcome = reply.outcome()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert outcome.interrupted
    return outcome.heard_text


@pytest.mark.parametrize("rate", [16000, 8000], ids=["web-16k", "phone-8k"])
async def test_elevenlabs_alignment_keeps_exactly_the_characters_heard(
    rate: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """0.58 s into "Our opening hours …" at 40 ms a character, 14 characters had been heard. Without
    alignment the cut would fall on whole words in proportion to the clause (here "Our opening")."""
    async with LocalElevenLabs() as server:
        tts = PhraseCache(ElevenLabsSynthesizer(server.api_key, "21m00Tcm4TlvDq8ikWAM", base_url=server.url))
        assert await heard_at(tts, 0.58, rate, monkeypatch) == "Our opening ho"
        # The phrase is remembered with its timings: said again from memory, it is cut as exactly.
        assert await heard_at(tts, 0.30, rate, monkeypatch) == "Our ope"
        assert len(server.connections) == 1 and tts.hits == 1


LONG_ANSWER = (
    "Our opening hours are nine to five on weekdays and ten to four on Saturdays and we are closed on "
    "Sundays and public holidays throughout the year"
)


async def test_a_barge_in_over_the_elevenlabs_voice_keeps_only_the_characters_played() -> None:
    """A whole call on the fast engines with the ElevenLabs voice: the caller cuts in, and the context
    keeps the characters played up to the cut, as far as the voice's own timings tell."""
    lines = ["When are you open?", "Stop, are you open on Sunday?"]
    rules = [ScriptRule.say("Sunday", "No, we are closed on Sundays."), ScriptRule.say("open", LONG_ANSWER)]
    async with LocalElevenLabs(ms_per_char=40.0) as server:
        engines = stack(lines, rules)
        engines.tts = PhraseCache(
            ElevenLabsSynthesizer(server.api_key, "21m00Tcm4TlvDq8ikWAM", base_url=server.url)
        )
        conv, result = await converse(agent(), engines, [UserTurn(speech(1.0)), UserTurn(speech(1.2), 1500)])

    cancelled = [e for e in result.events if e.type is EventType.REPLY_CANCELLED]
    assert cancelled and cancelled[0].data["interrupted"]
    heard = cancelled[0].data["heard_text"]
    history = [(m.role, m.content) for m in conv.session.context.messages]
    assert history[:2] == [("user", "When are you open?"), ("assistant", heard)]
    assert history[2:] == [
        ("user", "Stop, are you open on Sunday?"),
        ("assistant", "No, we are closed on Sundays."),
    ]
    # Heard for (stop - start) seconds: at 40 ms a character, that many characters and not more.
    reply_id = cancelled[0].data["reply_id"]
    started = next(
        e for e in result.events if e.type is EventType.AGENT_AUDIO_STARTED and e.data["reply_id"] == reply_id
    )
    stopped = next(
        e for e in result.events if e.type is EventType.AGENT_AUDIO_STOPPED and e.data["reply_id"] == reply_id
    )
    played_chars = (stopped.data["at"] - started.data["at"]) / 0.040
    assert heard and LONG_ANSWER.startswith(heard) and len(heard) < len(LONG_ANSWER) / 2
    assert abs(len(heard) - played_chars) <= 1.0, (heard, played_chars)


async def test_a_barge_in_mid_clause_closes_the_elevenlabs_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reply is cancelled while the clause is still being generated: its socket closes at once,
    and the cut clause is not remembered by the phrase cache."""
    async with LocalElevenLabs(chunk_delay_s=0.05) as server:
        tts = PhraseCache(ElevenLabsSynthesizer(server.api_key, "21m00Tcm4TlvDq8ikWAM", base_url=server.url))
        assert await heard_at(tts, 0.30, 16000, monkeypatch) == "Our ope"
        (connection,) = server.connections
        await asyncio.wait_for(connection.closed.wait(), 5)
    assert connection.closed_by_client_early and not connection.final_sent
    assert ANSWER not in tts
