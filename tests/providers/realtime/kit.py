"""Speech-to-speech calls on the local Realtime server: an agent in that mode and its stack."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from parley.audio.vad import EnergyVAD
from parley.config import Settings
from parley.engine.agent import AgentConfig
from parley.engine.events import Event, EventType, Timeline
from parley.engine.options import EngineStack
from parley.engine.speech_to_speech import NotInPipeline
from parley.providers.asr.scripted import ScriptedRecognizer
from parley.providers.options import parse_options
from parley.providers.registry import BuildRequest, provider
from tests.engine.harness import RATE, agent
from tests.providers.realtime.local_server import LocalRealtime

KEY = "sk-local-test"


def s2s_agent(**overrides: Any) -> AgentConfig:
    """The engine tests' agent, in speech-to-speech mode on OpenAI Realtime (its VAD ends a turn after
    300 ms of silence)."""
    options = {"silence_duration_ms": 300, "api_key_secret": "openai_key"}
    return agent(
        mode="speech_to_speech", s2s={"provider": "openai_realtime", "options": options}, **overrides
    )


def s2s_stack(config: AgentConfig, server: LocalRealtime) -> EngineStack:
    """The stack ``parley.stack`` builds for ``config``, with the operator's URL set to the local server
    and the organization's secret holding its key."""
    assert config.s2s is not None
    entry = provider("s2s", config.s2s.provider)
    options = parse_options("s2s", config.s2s.provider, config.s2s.options)
    host = Settings(openai_realtime_url=server.url, openai_realtime_timeout_s=5.0)
    unused = NotInPipeline()
    return EngineStack(
        vad_factory=lambda: EnergyVAD(RATE, frame_ms=32, threshold_dbfs=-35.0),
        recognizer=ScriptedRecognizer([]),
        llm=unused,
        tts=unused,
        s2s=entry.factory(BuildRequest(options, host, {"openai_key": KEY})),
    )


async def event_of(
    timeline: Timeline,
    kind: EventType,
    *,
    where: Callable[[Event], bool] = lambda _: True,
    within_s: float = 10.0,
) -> Event:
    """The first event of ``kind`` (already on the timeline, or the next one) that ``where`` accepts."""
    for event in timeline.events:
        if event.type is kind and where(event):
            return event
    found: asyncio.Future[Event] = asyncio.get_running_loop().create_future()

    def watch(event: Event) -> None:
        if event.type is kind and where(event) and not found.done():
            found.set_result(event)

    stop = timeline.subscribe(watch)
    try:
        async with asyncio.timeout(within_s):
            return await found
    finally:
        stop()
