"""The server's own app (``create_platform_app``: middleware, error handlers and routes) in the test's
event loop, for tests of what reaches a route before and around it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx

from parley.config import Settings
from parley.engine.agent import AgentConfig
from parley.engine.session import EngineStack
from parley.server.app import create_platform_app
from parley.server.stacks import AgentCatalog
from tests.engine.harness import agent, stack


@contextlib.asynccontextmanager
async def server_app_client(settings: Settings, key: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client authenticated with ``key`` on the app built from ``settings``, its lifespan running, with
    one agent ("assistant") on engines that say nothing. An error in the app is the 500 a client would
    get, not an exception in the test."""

    async def engines(_: AgentConfig) -> EngineStack:
        return stack([], [])

    app = create_platform_app(
        settings, catalog=AgentCatalog([agent(name="assistant")]), stack_factory=engines
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://parley.test", headers={"Authorization": f"Bearer {key}"}
        ) as http:
            yield http
