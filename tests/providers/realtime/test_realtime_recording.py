"""A speech-to-speech call on the live path leaves the same call record as a pipeline call: transcript,
timeline, latency, costs and a two-channel recording (mirrors ``tests/platform/test_live_call.py``)."""

from __future__ import annotations

import asyncio
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
from tests.providers.realtime.kit import s2s_agent, s2s_stack
from tests.providers.realtime.local_server import LocalRealtime, Rule
from tests.store.fixtures import *  # noqa: F403  (databases of both dialects)


class Tap:
    """What the microphone feeds: the call's recorder, then the session (as a transport does)."""

    def __init__(self, hear: Callable[[AudioFrame], None], session: ConversationEngine) -> None:
        self.hear = hear
        self.session = session

    def feed_audio(self, frame: AudioFrame) -> None:
        self.hear(frame)
        self.session.feed_audio(frame)


async def wait_quiet(session: ConversationEngine, within_s: float = 10.0) -> None:
    """Until the agent has answered and said everything (the session is idle for a while)."""
    deadline = now() + within_s
    quiet_since: float | None = None
    while now() < deadline and session.state is not SessionState.ENDED:
        quiet_since = (quiet_since or now()) if session.idle else None
        if quiet_since is not None and now() - quiet_since > 0.5:
            return
        await asyncio.sleep(0.02)


async def test_realtime_live_call_is_recorded_whole(db_url: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=db_url, cost_markup_percent=10.0)
    platform = await Platform.open(settings)
    server = LocalRealtime(["What is the capital of France?"], [Rule("capital", "Paris, of course.")])
    try:
        org = platform.default_org_id
        config = s2s_agent(first_message="Hello, how can I help?")
        created = await platform.agents.create(org, AgentCreate(name="realtime", config=config))
        async with server:
            live = await platform.live_call(agent_ref="realtime", transport="websocket")
            async with live:
                speaker = Loudspeaker(RATE)
                session = open_session(
                    live.agent,
                    s2s_stack(live.agent, server),
                    live.output(speaker),
                    live.timeline,
                    build_tools(live.agent),
                    SessionOptions(interim_interval_s=None),
                    session_id=live.session_id,
                )
                assert isinstance(session, SpeechToSpeechSession)
                runner = asyncio.create_task(session.run())
                async with Microphone(Tap(live.hear, session), RATE) as mic:  # type: ignore[arg-type]
                    await wait_quiet(session)
                    await mic.say(speech(1.0).pcm, RATE)
                    await wait_quiet(session)
                session.end("hangup")
                await runner
        await platform.settle()
        detail = await platform.calls.detail(org, live.call_id)
    finally:
        await platform.close()

    assert detail.status == "completed" and detail.end_reason == "hangup"
    assert detail.agent_id == created.id
    said = [(t.speaker, t.text) for t in detail.transcript]
    assert said == [
        ("agent", "Hello, how can I help?"),
        ("user", "What is the capital of France?"),
        ("agent", "Paris, of course."),
    ]
    user, answer = detail.transcript[1], detail.transcript[2]
    assert 0 < user.start_ms < user.end_ms < answer.start_ms < answer.end_ms
    kinds = [e.type for e in detail.events]
    assert kinds[0] == "session.started" and kinds[-1] == "session.ended"
    assert detail.metrics["latency"]["voice_to_voice_ms"]["count"] == 1
    assert detail.metrics["counts"]["user_turns"] == 1

    costs = {line.kind: line for line in detail.costs.lines}
    assert {"llm_input_tokens", "llm_output_tokens"} <= set(costs), "the engine's tokens are priced"
    assert not {"asr_seconds", "tts_characters"} & set(costs), "no pipeline ASR or voice was used"
    assert {line.provider for kind, line in costs.items() if kind.startswith("llm_")} == {"openai_realtime"}

    assert detail.recording is not None and detail.recording.status == "ready"
    path = tmp_path / "artifacts" / "recordings" / f"{live.call_id}.wav"
    stereo, rate = sf.read(path, dtype="int16", always_2d=True)
    assert stereo.shape[1] == 2 and rate == 16000
    assert abs(len(stereo) / rate * 1000 - detail.recording.duration_ms) < 5
    user_ch, agent_ch = stereo[:, 0].astype(float), stereo[:, 1].astype(float)
    speech_at = int(user.start_ms / 1000 * rate)
    answer_at = int(answer.start_ms / 1000 * rate)
    window = int(0.3 * rate)
    assert np.abs(user_ch[speech_at : speech_at + window]).mean() > 1000, "the caller is on the left"
    assert np.abs(agent_ch[speech_at : speech_at + window]).mean() < 50, "the agent was silent meanwhile"
    assert np.abs(agent_ch[answer_at : answer_at + window]).mean() > 1000, "the answer is on the right"
    assert not server.problems
