"""Outbound webhook deliveries in the server: the dispatcher runs as long as the app runs with its store.

Every server process runs one; deliveries are leased, so several processes share the outbox safely. It
keeps delivering while live calls drain (their last events are exactly what endpoints wait for) and
stops at shutdown; what it had not sent is sent by the next process.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from parley.config import Settings
from parley.server.app import Lifespan
from parley.webhooks.dispatcher import WebhookDispatcher


def with_webhooks(settings: Settings) -> Lifespan:
    """A lifespan, entered after ``with_platform``, that delivers outbound webhooks."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        platform = app.state.platform
        dispatcher = WebhookDispatcher(platform.db, platform.secrets, settings)
        app.state.webhooks = dispatcher
        task = asyncio.create_task(dispatcher.run(), name="webhook-dispatcher")
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            app.state.webhooks = None

    return lifespan
