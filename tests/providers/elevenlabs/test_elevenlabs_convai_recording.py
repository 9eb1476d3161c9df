"""A call on an ElevenLabs agent over the live path leaves the same call record as a pipeline call:
transcript, timeline, latency, per-minute costs and a two-channel recording (as
``tests/platform/test_live_call.py`` checks for the pipeline)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

from parley.audio.frame import AudioFrame
from parley.config import Settings
from parley.engine.conversation import ConversationEngine, open_session
from parley.engine.events import now
from parley.engine.options import SessionOptions
from parley.engine.speech_to_speech import SpeechToSpeechSession
from parley.engine.state import SessionState
from parley.platform.runtime import Platform
from parley.platform.schemas import AgentCreate
from parley.simulation import Loudspeaker, Microphone
from parley.stack import build_tools
from tests.engine.harness import RATE, speech
from tests.providers.elevenlabs.local_convai_server import LocalConvai, Rule
from tests.providers.elevenlabs.test_elevenlabs_convai_session import convai_agent, convai_stack
from tests.store.fixtures import sqlite_template  # noqa: F401  (the migrated SQLite database to copy)


class Tap:
    """What the microphone feeds: the call's recorder, then the session (as a transport does)."""

    def __init__(self, hear: Callable[[AudioFrame], None], session: ConversationEngine) -> None:
        self.hear = hear
        self.session = session

    def feed_audio(self, frame: AudioFrame) -> None:
        self.hear(frame)
        self.session.feed_audio(frame)


async def quiet(session: ConversationEngine, within_s: float = 10.0) -> None:
    """Until the agent has answered and said everything (the session idle for half a second)."""
    deadline = now() + within_s
    since: float | None = None
    while now() < deadline and session.state is not SessionState.ENDED:
        since = (since or now()) if session.idle else None
        if since is not None and now() - since > 0.5:
            return
        await asyncio.sleep(0.02)


async def test_elevenlabs_convai_live_call_is_recorded_and_priced_by_the_minute(
    sqlite_template: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    database = tmp_path / "parley.db"
    shutil.copyfile(sqlite_template, database)
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite+aiosqlite:///{database}")
    platform = await Platform.open(settings)
    server = LocalConvai(["What is the capital of France?"], [Rule("capital", "Paris, of course.")])
    try:
        org = platform.default_org_id
        config = convai_agent(first_message="Hello, how can I help?")
        await platform.agents.create(org, AgentCreate(name="eleven", config=config))
        async with server:
            live = await platform.live_call(agent_ref="eleven", transport="websocket")
            async with live:
                session = open_session(
                    live.agent,
                    convai_stack(live.agent, server),
                    live.output(Loudspeaker(RATE)),
                    live.timeline,
                    build_tools(live.agent),
                    SessionOptions(interim_interval_s=None),
                    session_id=live.session_id,
                )
                assert isinstance(session, SpeechToSpeechSession)
                runner = asyncio.create_task(session.run())
                async with Microphone(Tap(live.hear, session), RATE) as mic:  # type: ignore[arg-type]
                    await quiet(session)
                    await mic.say(speech(1.0).pcm, RATE)
                    await quiet(session)
                session.end("hangup")
                await runner
        await platform.settle()
        detail = await platform.calls.detail(org, live.call_id)
    finally:
        await platform.close()

    assert detail.status == "completed" and detail.end_reason == "hangup"
    said = [(t.speaker, t.text) for t in detail.transcript]
    assert said == [
        ("agent", "Hello, how can I help?"),
        ("user", "What is the capital of France?"),
        ("agent", "Paris, of course."),
    ]
    user, answer = detail.transcript[1], detail.transcript[2]
    assert 0 < user.start_ms < user.end_ms < answer.start_ms < answer.end_ms
    assert detail.metrics["latency"]["voice_to_voice_ms"]["count"] == 1

    costs = {line.kind: line for line in detail.costs.lines}
    minutes = costs["speech_to_speech_seconds"]
    assert minutes.provider == "elevenlabs_convai" and minutes.cost_usd > 0, "priced per minute"
    assert minutes.quantity > 3, "the call's seconds: greeting, question and answer"
    assert not {"asr_seconds", "tts_characters", "llm_input_tokens"} & set(costs), "no tokens, no pipeline"

    assert detail.recording is not None and detail.recording.status == "ready"
    stereo, rate = sf.read(tmp_path / "artifacts" / "recordings" / f"{live.call_id}.wav", dtype="int16")
    assert stereo.shape[1] == 2 and rate == 16000
    left, right = stereo[:, 0].astype(float), stereo[:, 1].astype(float)
    speech_at, answer_at, window = int(user.start_ms * 16), int(answer.start_ms * 16), int(0.3 * rate)
    assert np.abs(left[speech_at : speech_at + window]).mean() > 1000, "the caller is on the left"
    assert np.abs(right[speech_at : speech_at + window]).mean() < 50, "the agent was silent meanwhile"
    assert np.abs(right[answer_at : answer_at + window]).mean() > 1000, "the answer is on the right"
    assert not server.problems
