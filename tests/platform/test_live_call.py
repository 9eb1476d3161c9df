"""A conversation on the live path leaves a whole call record: row, transcript, timeline, recording, costs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from parley.config import Settings
from parley.platform.runtime import Platform
from parley.platform.schemas import AgentCreate
from parley.providers.llm.scripted import ScriptRule
from tests.engine.harness import agent, speech
from tests.platform.live import run_live_call


async def test_a_live_conversation_is_recorded_whole(db_url: str, tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, database_url=db_url, cost_markup_percent=10.0, currency_rates={"INR": 85.0}
    )
    platform = await Platform.open(settings)
    try:
        org = platform.default_org_id
        config = agent(first_message="Hello, how can I help?")
        created = await platform.agents.create(org, AgentCreate(name="support", config=config))
        live = await run_live_call(
            platform,
            "support",
            ["What is the capital of France?"],
            [ScriptRule.say("capital", "Paris, of course.")],
            [speech(1.0)],
        )
        await platform.settle()
        detail = await platform.calls.detail(org, live.call_id)
    finally:
        await platform.close()

    assert detail.status == "completed" and detail.end_reason == "hangup"
    assert detail.agent_id == created.id and detail.agent_version == 1
    assert detail.started_at is not None and detail.ended_at is not None and detail.duration_s
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
    assert [e.seq for e in detail.events] == list(range(1, len(kinds) + 1))
    assert detail.metrics["latency"]["voice_to_voice_ms"]["count"] == 1
    assert detail.metrics["counts"]["user_turns"] == 1

    costs = {line.kind: line for line in detail.costs.lines}
    assert set(costs) == {"asr_seconds", "llm_input_tokens", "llm_output_tokens", "tts_characters"}
    assert costs["tts_characters"].quantity == len("Hello, how can I help?") + len("Paris, of course.")
    assert 0.9 < costs["asr_seconds"].quantity < 1.6
    assert detail.costs.total_usd == detail.costs.subtotal_usd + detail.costs.markup_usd > 0
    assert detail.costs.currency == "INR" and detail.costs.total == (detail.costs.total_usd * 85).quantize(
        detail.costs.total
    )

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
