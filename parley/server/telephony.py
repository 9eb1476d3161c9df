"""Phone calls in the server: Twilio's REST client and the outbound queue's dispatcher, for as long as the
app runs with its store.

Routes find them in ``app.state``: ``twilio_rest`` (a ``TwilioRest``, None while Twilio is not
configured) and ``outbound`` (the ``OutboundQueue``; jobs can be read and canceled either way). The
dispatcher runs only with Twilio configured, and stops when the server starts draining: a call placed
then would reach a server that refuses its stream. It dials an attempt only once the attempt's agent
version is ready in this server (models warm, prompt primed, greeting synthesized: ``warm_agent``), so the
callee hears the greeting the moment they answer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from fastapi import FastAPI

from parley.config import Settings
from parley.engine.agent import AgentConfig
from parley.jobs.outbound import AgentWarmer, OutboundQueue
from parley.server.app import Lifespan
from parley.server.runtime import LiveRuntime
from parley.telephony.rest import NoCarrier, TwilioRest

log = structlog.get_logger("parley.server.telephony")

DRAIN_CHECK_S = 0.5


def with_telephony(settings: Settings) -> Lifespan:
    """A lifespan, entered after ``with_platform``, that wires phone calls into the app."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rest = TwilioRest.from_settings(settings)
        runtime: LiveRuntime = app.state.runtime
        queue = OutboundQueue(app.state.platform, settings, rest or NoCarrier(), warm=warm_agent(runtime))
        app.state.twilio_rest = rest
        app.state.outbound = queue
        dispatcher: asyncio.Task[None] | None = None
        if rest is None:
            log.info(
                "Twilio is not configured (PARLEY_TWILIO_ACCOUNT_SID, PARLEY_TWILIO_AUTH_TOKEN): no calls"
            )
        else:
            dispatcher = asyncio.create_task(_dispatch(queue, runtime), name="outbound-queue")
        try:
            yield
        finally:
            if dispatcher is not None:
                dispatcher.cancel()
                await asyncio.gather(dispatcher, return_exceptions=True)
            app.state.twilio_rest = None
            app.state.outbound = None

    return lifespan


def warm_agent(runtime: LiveRuntime) -> AgentWarmer:
    """The queue's ``warm``: the stack the call's media stream will be admitted with (the same agent, as
    the runtime serves it, with the organization's secrets), loaded and warmed now. Raises what loading
    raised: the attempt then fails undialed."""

    async def warm(org_id: str, agent: AgentConfig) -> None:
        served = runtime.served_as_filed(agent)  # as admission will serve it: the same stack, not another one
        await runtime.engines.stack_for(served, await runtime.secrets_for(served, org_id))

    return warm


async def _dispatch(queue: OutboundQueue, runtime: LiveRuntime) -> None:
    """Place queued calls once the default agent's models are warm, each once its own agent is ready
    (``warm_agent``): a call dialled while they load is answered by silence (the callee hangs up, or a
    machine goes unheard), and the job would count as done."""
    if not runtime.engines.ready.is_set():
        log.info("the outbound queue waits for the models before it places calls")
        await runtime.engines.ready.wait()
    runner = asyncio.create_task(queue.run(), name="outbound-dispatcher")
    try:
        while not runtime.draining and not runner.done():
            await asyncio.wait([runner], timeout=DRAIN_CHECK_S)
        if runtime.draining:
            log.info("server draining: the outbound queue stops placing calls")
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
