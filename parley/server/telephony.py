"""Phone calls in the server: Twilio's REST client and the outbound queue's dispatcher, for as long as the
app runs with its store.

Routes find them in ``app.state``: ``twilio_rest`` (a ``TwilioRest``, None while Twilio is not
configured) and ``outbound`` (the ``OutboundQueue``; jobs can be read and canceled either way). The
dispatcher runs only with Twilio configured, and stops when the server starts draining: a call placed
then would reach a server that refuses its stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from fastapi import FastAPI

from parley.config import Settings
from parley.jobs.outbound import OutboundQueue
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
        queue = OutboundQueue(app.state.platform, settings, rest or NoCarrier())
        app.state.twilio_rest = rest
        app.state.outbound = queue
        dispatcher: asyncio.Task[None] | None = None
        if rest is None:
            log.info(
                "Twilio is not configured (PARLEY_TWILIO_ACCOUNT_SID, PARLEY_TWILIO_AUTH_TOKEN): no calls"
            )
        else:
            dispatcher = asyncio.create_task(_dispatch(queue, app.state.runtime), name="outbound-queue")
        try:
            yield
        finally:
            if dispatcher is not None:
                dispatcher.cancel()
                await asyncio.gather(dispatcher, return_exceptions=True)
            app.state.twilio_rest = None
            app.state.outbound = None

    return lifespan


async def _dispatch(queue: OutboundQueue, runtime: LiveRuntime) -> None:
    """Place queued calls once the models are warm: a call dialled while they load is answered by
    silence (the callee hangs up, or a machine goes unheard), and the job would count as done."""
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
