"""The playout clock: frames leave ahead of their play time by the configured lead, clause after clause."""

from __future__ import annotations

import asyncio

from parley.audio.frame import AudioFrame
from parley.engine.context import ConversationContext
from parley.engine.events import now
from parley.engine.reply import Reply, ReplyDeps, ReplySettings
from parley.engine.tools import ToolRegistry
from parley.providers.llm.base import ChatMessage
from parley.providers.llm.scripted import ScriptedModel, ScriptRule
from parley.providers.tts.tone import ToneSynthesizer


class StampingOutput:
    sample_rate = 16000

    def __init__(self) -> None:
        self.leads: list[float] = []

    async def write(self, frame: AudioFrame) -> None:
        self.leads.append(frame.timestamp - now())

    async def clear(self) -> None:
        pass


async def test_every_clause_keeps_the_lead() -> None:
    llm = ScriptedModel([ScriptRule.say("", "First clause here. Second one follows. And a third.")])
    output = StampingOutput()
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
    steady = output.leads[5:]
    assert min(steady) > 0.06, f"a frame left with only {min(steady) * 1000:.0f} ms of lead"
