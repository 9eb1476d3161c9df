"""Parley and the local Twilio, each on a free port of this machine, in the test's event loop.

Parley runs whole (store, REST API, webhooks, media streams, outbound queue) with the fast deterministic
engines of ``tests/engine/harness.py`` and Twilio settings pointing at the local Twilio, which calls it
back at ``public_url`` with signed webhooks and media streams, exactly as Twilio would. Tests act as the
people involved: an operator through the REST API, a caller or callee through the local Twilio.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from parley.engine.agent import AgentConfig
from parley.engine.events import now
from parley.engine.session import EngineStack
from parley.providers.llm.scripted import ScriptedModel, ScriptRule
from parley.providers.tts.tone import ToneSynthesizer
from parley.server.app import create_platform_app
from parley.server.runtime import LiveRuntime
from parley.server.stacks import AgentCatalog
from parley.twilio_sim.caller import SimulatedCaller
from parley.twilio_sim.resources import SimCall
from parley.twilio_sim.server import TwilioSim, serving
from tests.engine.harness import agent, stack
from tests.server.conftest import QuietServer, settings

ACCOUNT_SID = "AC" + "7e" * 16
AUTH_TOKEN = "phone-acceptance-auth-token-0123"
API_KEY = "pk_phone-acceptance-key"
PARLEY_NUMBER = "+14155550100"
"""The organization's number at Twilio, answered by its agent."""
PERSON = "+12025550123"
"""A person who calls in, or is called."""
MS_PER_CHAR = 40.0
"""The tone TTS speaks every character for this long: heard durations tell how much text was heard."""
EVENTS = ("initiated", "ringing", "answered", "completed")


@dataclass
class PhoneLab:
    """Parley (``base``, ``runtime``) and the local Twilio (``twilio``), with the operator's API client."""

    base: str
    runtime: LiveRuntime
    twilio: TwilioSim
    api: httpx.AsyncClient
    engines: EngineStack

    @property
    def llm(self) -> ScriptedModel:
        assert isinstance(self.engines.llm, ScriptedModel)
        return self.engines.llm

    @property
    def tts(self) -> ToneSynthesizer:
        assert isinstance(self.engines.tts, ToneSynthesizer)
        return self.engines.tts

    async def add_agent(self, config: AgentConfig, number: str | None = PARLEY_NUMBER) -> str:
        """Create the agent through the REST API (and route ``number`` to it); returns its id."""
        made = await self.api.post(
            "/v1/agents", json={"name": config.name, "config": config.model_dump(mode="json")}
        )
        assert made.status_code == 201, made.text
        agent_id = str(made.json()["id"])
        if number is not None:
            routed = await self.api.post("/v1/phone-numbers", json={"number": number, "agent": agent_id})
            assert routed.status_code == 201, routed.text
        return agent_id

    def dial_in(self, from_: str = PERSON, to: str = PARLEY_NUMBER) -> SimCall:
        """A person dials the organization's number: Twilio asks Parley's voice URL what to do."""
        return self.twilio.place_inbound(
            from_,
            to,
            f"{self.base}/twilio/voice",
            status_callback=f"{self.base}/twilio/status",
            status_callback_events=EVENTS,
        )

    async def call_record(
        self, call_id: str, ready: Callable[[dict[str, Any]], bool] | None = None, limit_s: float = 10.0
    ) -> dict[str, Any]:
        """``GET /v1/calls/{id}`` once the call has ended on the books (and ``ready`` holds)."""
        deadline = now() + limit_s
        while True:
            response = await self.api.get(f"/v1/calls/{call_id}")
            assert response.status_code == 200, response.text
            record: dict[str, Any] = response.json()
            if record["ended_at"] is not None and (ready is None or ready(record)):
                return record
            if now() > deadline:
                raise AssertionError(f"call {call_id} not settled on the books in {limit_s:g} s: {record}")
            await asyncio.sleep(0.1)


def call_id_of(call: SimCall) -> str:
    """Parley's id of a call, as its TwiML named it in the stream's parameters."""
    assert call.streams, f"no media stream on {call.sid}: {call.errors} {call.twiml}"
    return call.streams[-1].parameters["call_id"]


@contextlib.asynccontextmanager
async def phone_lab(
    tmp_path: Path,
    *,
    lines: Sequence[str] = (),
    rules: Sequence[ScriptRule] = (),
    **overrides: Any,
) -> AsyncIterator[PhoneLab]:
    """The local Twilio, then Parley configured to use it (its own ``public_url`` known before it starts:
    the listening socket is bound first)."""
    engines = stack(lines, rules, MS_PER_CHAR)
    async with serving(TwilioSim(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN)) as twilio:
        assert twilio.base_url is not None
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        base = f"http://127.0.0.1:{listener.getsockname()[1]}"
        values: dict[str, Any] = {
            "data_dir": tmp_path,
            "api_key": API_KEY,
            "public_url": base,
            "twilio_account_sid": ACCOUNT_SID,
            "twilio_auth_token": AUTH_TOKEN,
            "twilio_api_base_url": twilio.base_url,
            "outbound_poll_s": 0.1,
            "outbound_retry_backoff_s": [0.3],
            "outbound_calling_window": "00:00-24:00",
            "outbound_ring_timeout_s": 5,
        }
        values.update(overrides)

        async def factory(_: AgentConfig) -> EngineStack:
            return engines

        app = create_platform_app(
            settings(**values), catalog=AgentCatalog([agent(name="assistant")]), stack_factory=factory
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
            runtime: LiveRuntime = app.state.runtime
            await asyncio.wait_for(runtime.engines.ready.wait(), 5)
            headers = {"Authorization": f"Bearer {API_KEY}"}
            async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10.0) as api:
                yield PhoneLab(base, runtime, twilio, api, engines)
        finally:
            await twilio.aclose()  # calls end before Parley goes: no webhook to a stopped server
            server.should_exit = True
            await asyncio.wait_for(task, 15)
            listener.close()


async def until(condition: Callable[[], bool], limit_s: float = 10.0) -> None:
    """Wait for what an ear heard or a record shows (state with no event of its own)."""
    async with asyncio.timeout(limit_s):
        while not condition():  # noqa: ASYNC110  (audio reaches the caller frame by frame)
            await asyncio.sleep(0.02)


async def heard_reply(caller: SimulatedCaller, since: float, limit_s: float = 10.0) -> tuple[float, float]:
    """Wait until the caller heard the agent say something after ``since`` and then stop; its span."""

    def finished() -> bool:
        span = caller.heard_voice(since, now())
        return span is not None and span[1] < now() - 0.3

    await until(finished, limit_s)
    span = caller.heard_voice(since, now())
    assert span is not None
    return span
