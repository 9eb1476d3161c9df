"""The platform's routers on a bare FastAPI app, with a platform on a fresh database of each dialect."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from parley.config import Settings
from parley.platform.runtime import Platform
from parley.server.errors import install_error_handlers
from parley.server.routes import platform_routers
from tests.store.fixtures import *  # noqa: F403  (databases of both dialects, Redis)

BOOT_KEY = "pk_bootstrap-key-for-tests"


@pytest.fixture
async def platform(db_url: str, tmp_path: Path) -> AsyncIterator[Platform]:
    opened = await Platform.open(
        Settings(
            data_dir=tmp_path,
            database_url=db_url,
            api_key=BOOT_KEY,
            currency_rates={"INR": 85.0},
            cost_markup_percent=10.0,
        )
    )
    yield opened
    await opened.close()


def make_app(platform: Platform) -> FastAPI:
    app = FastAPI(title="Parley")
    install_error_handlers(app)
    for router in platform_routers():
        app.include_router(router)
    app.state.platform = platform
    return app


@contextlib.asynccontextmanager
async def api_client(platform: Platform, key: str = BOOT_KEY) -> AsyncIterator[httpx.AsyncClient]:
    """A client of ``platform``'s routes on a bare app (``make_app``), authenticated with ``key``."""
    transport = httpx.ASGITransport(app=make_app(platform))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://parley.test", headers={"Authorization": f"Bearer {key}"}
    ) as http:
        yield http


@pytest.fixture
async def client(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(platform) as http:
        yield http
