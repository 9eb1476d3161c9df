"""``parley simulate`` files its conversation in the same store as live calls."""

from __future__ import annotations

from pathlib import Path

from parley.config import Settings
from parley.engine.events import now
from parley.platform.runtime import Platform
from parley.platform.simulation import record_simulation
from parley.providers.llm.scripted import ScriptRule
from parley.simulate import UserTurn
from parley.simulation import mix_stereo
from parley.store.calls import CallFilters
from tests.engine.harness import agent, converse, speech, stack


async def test_a_simulated_call_is_stored_like_a_live_one(db_url: str, tmp_path: Path) -> None:
    config = agent(name="sim-agent")
    conversation, result = await converse(
        config,
        stack(["Is it raining?"], [ScriptRule.say("raining", "No.")], ms_per_char=15),
        [UserTurn(speech(0.8))],
    )
    channels = mix_stereo(
        conversation.mic.recorded, conversation.speaker.clips, conversation.origin, now(), 16000
    )
    settings = Settings(data_dir=tmp_path, database_url=db_url)
    call_id = await record_simulation(
        agent=config, events=result.events, channels=channels, settings=settings
    )
    again = await record_simulation(agent=config, events=result.events, channels=channels, settings=settings)

    platform = await Platform.open(settings, consume=False)
    try:
        detail = await platform.calls.detail(platform.default_org_id, call_id)
        agent_out = await platform.agents.get(platform.default_org_id, "sim-agent")
        calls = (await platform.calls.page(platform.default_org_id, filters=CallFilters())).data
    finally:
        await platform.close()
    assert again == call_id and [c.id for c in calls] == [call_id], "recorded once"
    assert detail.transport == "simulation" and detail.status == "completed"
    assert detail.end_reason == "simulation_done"
    assert detail.agent_id == agent_out.id and detail.agent_version == 1 == agent_out.version
    assert [(t.speaker, t.text) for t in detail.transcript] == [("user", "Is it raining?"), ("agent", "No.")]
    assert len(detail.events) == len(result.events)
    assert detail.recording is not None and detail.recording.status == "ready"
    assert abs(detail.recording.duration_ms - len(channels[0]) / 16) < 2
    assert {line.kind for line in detail.costs.lines} >= {"asr_seconds", "tts_characters", "llm_input_tokens"}
