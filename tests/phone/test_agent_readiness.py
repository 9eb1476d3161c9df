"""A phone call to an agent other than the server's default, or to an agent just edited, against the local
Twilio: the caller hears the greeting at once, and the outbound queue dials only once the agent is ready.

Models are shared between agents, so a new agent (or a new version of one) only primes its own prompt and
greeting; the models here take seconds to warm, as real ones do, and are warmed once.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from parley.engine.agent import AgentConfig
from parley.engine.events import now
from parley.engine.session import EngineStack
from parley.providers.asr.scripted import ScriptedRecognizer
from parley.providers.llm.base import ChatMessage, ToolSpec
from parley.providers.llm.scripted import ScriptedModel
from parley.providers.tts.tone import ToneSynthesizer
from parley.server.app import create_platform_app
from parley.server.stacks import AgentCatalog
from parley.twilio_sim.caller import SimulatedCaller
from parley.twilio_sim.server import TwilioSim, serving
from tests.engine.harness import RATE, agent, stack
from tests.phone.conftest import (
    ACCOUNT_SID,
    API_KEY,
    AUTH_TOKEN,
    PARLEY_NUMBER,
    PERSON,
    PhoneLab,
    call_id_of,
    heard_reply,
    until,
)
from tests.server.conftest import QuietServer, settings

WARM_S = 2.0
"""How long each model takes to warm (recogniser, voice, language model): a full preparation is 6 s."""
AT_ONCE_S = 1.5
"""Where the greeting is heard within this of the call connecting, nobody waited for a warm-up (not even
one model's): a margin for a loaded CI machine, where the greeting itself takes a few hundred ms."""


class SlowRecognizer(ScriptedRecognizer):
    def __init__(self) -> None:
        super().__init__([])
        self.warmed = 0

    async def warm_up(self) -> None:
        self.warmed += 1
        await asyncio.sleep(WARM_S)


class SlowVoice(ToneSynthesizer):
    def __init__(self) -> None:
        super().__init__(sample_rate=RATE, ms_per_char=20.0)
        self.warmed = 0

    async def warm_up(self) -> None:
        self.warmed += 1
        await asyncio.sleep(WARM_S)


class SlowModel(ScriptedModel):
    def __init__(self) -> None:
        super().__init__([])
        self.warmed = 0
        self.primed: list[str] = []
        """The system prompts primed, one per agent version."""

    async def warm_up(
        self, messages: list[ChatMessage] | None = None, tools: list[ToolSpec] | None = None
    ) -> None:
        if messages:  # an agent's own prompt prefix: quick
            self.primed.append(str(messages[0].content))
            return
        self.warmed += 1
        await asyncio.sleep(WARM_S)


@contextlib.asynccontextmanager
async def lab(
    tmp_path: Path, factory: Callable[[AgentConfig], Awaitable[EngineStack]] | None, engines: EngineStack
) -> AsyncIterator[PhoneLab]:
    """``tests/phone/conftest.phone_lab`` with the server's own preparation of stacks (``factory`` None) or
    the given one."""
    async with serving(TwilioSim(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN)) as twilio:
        assert twilio.base_url is not None
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        base = f"http://127.0.0.1:{listener.getsockname()[1]}"
        app = create_platform_app(
            settings(
                data_dir=tmp_path,
                api_key=API_KEY,
                public_url=base,
                twilio_account_sid=ACCOUNT_SID,
                twilio_auth_token=AUTH_TOKEN,
                twilio_api_base_url=twilio.base_url,
                outbound_poll_s=0.1,
                outbound_retry_backoff_s=[0.3],
                outbound_calling_window="00:00-24:00",
                outbound_ring_timeout_s=5,
            ),
            catalog=AgentCatalog([agent(name="assistant")]),
            stack_factory=factory,
        )
        config = uvicorn.Config(app, log_level="warning", lifespan="on", ws_per_message_deflate=False)
        server = QuietServer(config, drain=lambda: app.state.runtime.drain())
        task = asyncio.create_task(server.serve(sockets=[listener]), name="parley-server")
        try:
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("Parley stopped before it started")
                await asyncio.sleep(0.01)
            runtime = app.state.runtime
            await asyncio.wait_for(runtime.engines.ready.wait(), 4 * WARM_S + 5)
            headers = {"Authorization": f"Bearer {API_KEY}"}
            async with httpx.AsyncClient(base_url=base, headers=headers, timeout=20.0) as api:
                yield PhoneLab(base, runtime, twilio, api, engines)
        finally:
            await twilio.aclose()
            server.should_exit = True
            await asyncio.wait_for(task, 15)
            listener.close()


async def greeting_delay(caller: SimulatedCaller) -> float:
    """Seconds from the call connecting until the caller began to hear the agent (once it finished)."""
    connected = now()
    start, _end = await heard_reply(caller, connected, limit_s=4 * WARM_S + 5)
    return start - connected


async def hang_up(lab: PhoneLab, caller: SimulatedCaller, call_id: str) -> dict[str, Any]:
    await caller.hang_up()
    return await lab.call_record(call_id, lambda r: bool(r["transcript"]))


async def test_a_new_agent_and_each_edit_of_it_greet_the_first_caller_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recognizer, voice, model = SlowRecognizer(), SlowVoice(), SlowModel()
    shared = EngineStack(vad_factory=stack([], []).vad_factory, recognizer=recognizer, llm=model, tts=voice)
    monkeypatch.setattr("parley.stack.build_stack", lambda _agent, _secrets=None: shared)
    async with lab(tmp_path, None, shared) as phone:  # the default agent's models warmed at startup
        assert (recognizer.warmed, voice.warmed, model.warmed) == (1, 1, 1)
        made = await phone.api.post(
            "/v1/agents",
            json={"name": "front-desk", "config": agent(first_message="Front desk, hello.").model_dump()},
        )
        assert made.status_code == 201, made.text
        routed = await phone.api.post(
            "/v1/phone-numbers", json={"number": PARLEY_NUMBER, "agent": made.json()["id"]}
        )
        assert routed.status_code == 201, routed.text

        first = phone.dial_in()
        caller = await first.wait_connected()
        new_agent_s = await greeting_delay(caller)
        first_record = await hang_up(phone, caller, call_id_of(first))

        edited = await phone.api.patch(
            f"/v1/agents/{made.json()['id']}",
            json={"config": {"first_message": "Front desk, good day.", "system_prompt": "Be brief."}},
        )
        assert edited.status_code == 200 and edited.json()["version"] == 2, edited.text
        second = phone.dial_in()
        caller = await second.wait_connected()
        edited_s = await greeting_delay(caller)
        second_record = await hang_up(phone, caller, call_id_of(second))

    assert new_agent_s < AT_ONCE_S, f"a new agent's first caller waited {new_agent_s:.2f} s in silence"
    assert edited_s < AT_ONCE_S, f"the first caller after an edit waited {edited_s:.2f} s in silence"
    assert first_record["transcript"][0]["text"] == "Front desk, hello."
    assert second_record["transcript"][0]["text"] == "Front desk, good day."
    assert (recognizer.warmed, voice.warmed, model.warmed) == (1, 1, 1), "shared models warm once"
    assert "Be brief." in model.primed[-1], "each version's own prompt is primed"


class ReadyLater:
    """A stack factory: the default agent at once, any other agent ``delay_s`` later (or never)."""

    def __init__(self, engines: EngineStack, delay_s: float, fails: Sequence[str] = ()) -> None:
        self.engines = engines
        self.delay_s = delay_s
        self.fails = set(fails)
        self.ready_at: dict[str, float] = {}

    async def __call__(self, config: AgentConfig) -> EngineStack:
        if config.name != "assistant":
            await asyncio.sleep(self.delay_s)
            if config.name in self.fails:
                raise RuntimeError(f"the models of {config.name} failed to load")
        self.ready_at.setdefault(config.name, now())
        return self.engines


async def test_the_queue_dials_once_the_jobs_agent_is_ready_and_the_callee_hears_it_at_once(
    tmp_path: Path,
) -> None:
    engines = stack([], [])
    factory = ReadyLater(engines, delay_s=1.5)
    async with lab(tmp_path, factory, engines) as phone:
        await phone.add_agent(agent(name="reminders", first_message="Hi, this is Parley."))
        queued = await phone.api.post("/v1/calls", json={"agent": "reminders", "to": PERSON})
        assert queued.status_code == 202, queued.text
        await until(lambda: bool(phone.twilio.calls_to(PERSON)), limit_s=10)
        dialed_at = now()
        (call,) = phone.twilio.calls_to(PERSON)
        callee = await call.wait_connected()
        delay = await greeting_delay(callee)
        await callee.hang_up()
        await call.wait_ended()
    assert factory.ready_at["reminders"] <= dialed_at, "dialed before the agent was ready"
    assert delay < AT_ONCE_S, f"the callee waited {delay:.2f} s in silence"


async def test_a_job_whose_agent_cannot_be_made_ready_is_not_dialed(tmp_path: Path) -> None:
    engines = stack([], [])
    factory = ReadyLater(engines, delay_s=0.2, fails=["reminders"])
    async with lab(tmp_path, factory, engines) as phone:
        await phone.add_agent(agent(name="reminders", first_message="Hi, this is Parley."))
        queued = await phone.api.post(
            "/v1/calls", json={"agent": "reminders", "to": PERSON, "max_attempts": 1}
        )
        assert queued.status_code == 202, queued.text
        job_id = queued.json()["id"]

        async def settled() -> dict[str, Any]:
            while True:
                job: dict[str, Any] = (await phone.api.get(f"/v1/outbound-jobs/{job_id}")).json()
                if job["status"] not in ("pending", "dialing"):
                    return job
                await asyncio.sleep(0.1)

        job = await asyncio.wait_for(settled(), 10)
        record = await phone.call_record(job["last_call_id"])
        nobody_called = phone.twilio.calls_to(PERSON) == []
    assert nobody_called, "a call whose agent cannot talk is never placed"
    assert (job["status"], job["last_outcome"]) == ("exhausted", "failed:agent_not_ready")
    assert (record["status"], record["end_reason"], record["provider_call_id"]) == (
        "failed",
        "agent_not_ready",
        None,
    )
