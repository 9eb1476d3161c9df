"""The playout clock: frames leave ahead of their play time by the configured lead, clause after clause."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable

import pytest

from parley.audio.frame import PCM16, AudioFrame
from parley.engine import reply as reply_module
from parley.engine.context import ConversationContext
from parley.engine.events import EventType, now
from parley.engine.reply import Reply, ReplyDeps, ReplySettings
from parley.engine.tools import ToolRegistry
from parley.providers.llm.base import ChatMessage
from parley.providers.llm.scripted import ScriptedModel, ScriptRule
from parley.providers.tts.tone import ToneSynthesizer


class StampingOutput:
    sample_rate = 16000

    def __init__(self, clock: Callable[[], float] = now) -> None:
        self.leads: list[float] = []
        self._clock = clock

    async def write(self, frame: AudioFrame) -> None:
        self.leads.append(frame.timestamp - self._clock())

    async def clear(self) -> None:
        pass


class VirtualClock:
    """The playout's clock, moved only by the playout's own waits: a busy machine cannot eat the lead."""

    def __init__(self) -> None:
        self.t = 1000.0

    def now(self) -> float:
        return self.t

    async def sleep_until(self, deadline: float) -> None:
        self.t = max(self.t, deadline)
        await asyncio.sleep(0)


async def test_every_clause_keeps_the_lead(monkeypatch: pytest.MonkeyPatch) -> None:
    """Measured on the virtual clock, so the check is about the schedule (a wait at a clause boundary
    would show as a lost lead), not about how busy the machine running the test is."""
    clock = VirtualClock()
    monkeypatch.setattr(reply_module, "now", clock.now)
    monkeypatch.setattr(reply_module, "_sleep_until", clock.sleep_until)
    llm = ScriptedModel([ScriptRule.say("", "First clause here. Second one follows. And a third.")])
    output = StampingOutput(clock.now)
    events: list[object] = []
    deps = ReplyDeps(
        llm,
        ToneSynthesizer(sample_rate=16000, ms_per_char=10),
        ToolRegistry(),
        ConversationContext("", [], 500, llm.count_tokens),
        output,
        lambda kind, **data: events.append(kind),
        ReplySettings(lead_s=0.08),
        lambda _: None,
    )
    reply = Reply(deps, ChatMessage("user", "go"))
    reply.commit()
    await asyncio.wait_for(reply.start(), 10)
    assert len(reply.segments) == 3
    assert output.leads[:4] == pytest.approx([0.0, 0.02, 0.04, 0.06]), "the first frames go out at once"
    steady = output.leads[4:]
    assert len(steady) > 15 and steady == pytest.approx([0.08] * len(steady)), (
        f"a frame left with only {min(steady) * 1000:.0f} ms of lead"
    )


async def test_each_clause_played_out_is_on_the_timeline_with_what_was_heard_by_then() -> None:
    llm = ScriptedModel([ScriptRule.say("", "First clause here. Second one follows. And a third.")])
    events: list[tuple[object, dict[str, object]]] = []
    deps = ReplyDeps(
        llm,
        ToneSynthesizer(sample_rate=16000, ms_per_char=10),
        ToolRegistry(),
        ConversationContext("", [], 500, llm.count_tokens),
        StampingOutput(),
        lambda kind, **data: events.append((kind, data)),
        ReplySettings(),
        lambda _: None,
    )
    reply = Reply(deps, ChatMessage("user", "go"))
    reply.commit()
    await asyncio.wait_for(reply.start(), 10)
    played = [data for kind, data in events if kind is EventType.AGENT_AUDIO_PLAYED]
    assert [(d["segment"], d["heard_text"]) for d in played] == [
        (0, "First clause here."),
        (1, "First clause here. Second one follows."),
        (2, "First clause here. Second one follows. And a third."),
    ]
    assert played[-1]["at"] == reply.audio_done_at, "the last clause is heard when the reply's audio ends"


class _VoiceThatOnlyApologises(ToneSynthesizer):
    """Fails on everything but the agent's error message (a voice that chokes on the model's text)."""

    def __init__(self, spared: str) -> None:
        super().__init__(sample_rate=16000, ms_per_char=5)
        self.spared = spared

    async def synthesize(self, text: str) -> AsyncGenerator[PCM16, None]:
        if text != self.spared:
            raise RuntimeError("tts engine crashed")
        async for chunk in super().synthesize(text):
            yield chunk


async def test_when_the_voice_fails_before_a_word_the_error_message_is_said_instead() -> None:
    sorry = "Sorry, something went wrong."
    llm = ScriptedModel([ScriptRule.say("", "First clause here. Second one follows.")])
    voice = _VoiceThatOnlyApologises(sorry)
    events: list[tuple[object, dict[str, object]]] = []
    output = StampingOutput()
    deps = ReplyDeps(
        llm,
        voice,
        ToolRegistry(),
        ConversationContext("", [], 500, llm.count_tokens),
        output,
        lambda kind, **data: events.append((kind, data)),
        ReplySettings(error_message=sorry),
        lambda _: None,
    )
    reply = Reply(deps, ChatMessage("user", "go"))
    reply.commit()
    await asyncio.wait_for(reply.start(), 10)  # ends normally: the failure is handled, not raised
    errors = [data for kind, data in events if kind is EventType.ERROR]
    assert [e["stage"] for e in errors] == ["tts"] and errors[0]["segment"] == 0
    assert voice.texts == [sorry]
    assert len(output.leads) > 0, "the apology was played"
    outcome = reply.outcome()
    assert outcome.heard_text == sorry
    assert [(m.role, m.content) for m in outcome.messages] == [("assistant", sorry)]
