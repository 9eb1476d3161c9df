"""The agent's playout holds while its client is disconnected; that hold is no audio underrun. A call
whose client dropped and came back must not show underruns (the call's counts, the client's
``metrics``, ``/metrics``), while a voice that really stalls still does."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator
from pathlib import Path

from parley.audio.frame import PCM16
from parley.engine.events import EventType
from parley.providers.llm.scripted import ScriptRule
from parley.providers.tts.tone import ToneSynthesizer
from tests.engine.harness import RATE
from tests.server.conftest import Served, fast_engines, reconnect, say_until, serving

KEY = "pk_underrun-test-key"
ANSWER = "Paris is lovely in the spring and the autumn, and the food is good."


async def underruns_counted(served: Served) -> float:
    found = re.search(
        r"^parley_audio_underruns_total ([0-9.e+]+)$", (await served.get("/metrics")).text, re.M
    )
    assert found is not None
    return float(found.group(1))


async def test_a_client_that_drops_and_resumes_mid_answer_causes_no_underrun(tmp_path: Path) -> None:
    engines = fast_engines(["Tell me about Paris."], [ScriptRule.say("Paris", ANSWER)])
    async with serving(engines, platform=True, data_dir=tmp_path, api_key=KEY) as served:
        first, _ = await say_until(served, "started", then_s=0.3)
        first.abort()  # the network goes away mid-answer; the playout holds
        await asyncio.sleep(1.5)
        live = served.runtime.registry.get(first.session_id or "")
        assert live is not None and live.downlink.holds > 0, "the playout held for the absent client"

        second, _ = await reconnect(served, first)
        await second.wait_for("agent.audio", 10, status="stopped")
        assert not live.timeline.of_type(EventType.AUDIO_UNDERRUN)
        reported = [m for m in first.messages + second.messages if "underrun_ms" in m]
        assert reported == [], "the client is not told of an underrun it did not hear"
        assert await underruns_counted(served) == 0
        await second.send({"type": "end"})
        await second.wait_closed()

        async with served.api(KEY) as http:
            detail: dict[str, object] = {}
            for _ in range(100):  # the persister finishes the call just after hang-up
                calls = (await http.get("/v1/calls", params={"status": "completed"})).json()["data"]
                if calls:
                    detail = (await http.get(f"/v1/calls/{calls[0]['id']}")).json()
                    if detail.get("metrics"):
                        break
                await asyncio.sleep(0.1)
        metrics = detail["metrics"]
        assert isinstance(metrics, dict)
        assert metrics["counts"]["underruns"] == 0, "the call's own figures count no underrun"
        assert metrics["counts"]["agent_replies"] == 1


class StallingVoice(ToneSynthesizer):
    """Says the answer's last clause only long after the one before has played out: a real gap."""

    async def synthesize(self, text: str) -> AsyncGenerator[PCM16, None]:
        if "the food" in text:
            await asyncio.sleep(2.5)
        async for chunk in super().synthesize(text):
            yield chunk


async def test_a_voice_that_stalls_while_the_client_listens_is_still_an_underrun() -> None:
    engines = fast_engines(["Tell me about Paris."], [ScriptRule.say("Paris", ANSWER)])
    engines.tts = StallingVoice(sample_rate=RATE, ms_per_char=40)
    async with serving(engines) as served:
        client, _ = await say_until(served, "stopped", limit_s=15)
        live = served.runtime.registry.get(client.session_id or "")
        assert live is not None and live.downlink.holds == 0
        gaps = [m["underrun_ms"] for m in client.messages if "underrun_ms" in m]
        assert max(gaps, default=0) > 200, "the stall was heard as a gap, and reported"
        assert await underruns_counted(served) == len(gaps)
        await client.close()
