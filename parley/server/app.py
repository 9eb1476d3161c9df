"""The FastAPI application: live sessions, health, metrics and the browser voice page.

Other parts of the platform (store, REST API, auth) add their routes through ``extra_routers`` and
follow every session's timeline through ``session_hooks``; this module knows nothing of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]  # no stubs

from parley.config import Settings, get_settings
from parley.server.errors import install_error_handlers
from parley.server.limits import install_request_limits
from parley.server.runtime import LiveRuntime, SessionHook
from parley.server.stacks import AgentCatalog, Engines, StackFactory
from parley.server.twilio_stream import twilio_stream_router
from parley.server.webrtc import webrtc_router
from parley.server.ws import ws_router
from parley.transports.ws_protocol import SUPPORTED_SAMPLE_RATES

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
DOCS_ASSETS = "/docs-assets"
READY_DB_TIMEOUT_S = 2.0
"""How long /readyz waits for the database before calling the worker not ready."""
READY_REDIS_TIMEOUT_S = 2.0
"""How long /readyz waits for Redis (when ``PARLEY_REDIS_URL`` is set) before calling the worker not ready."""
log = structlog.get_logger("parley.server")


Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_app(
    settings: Settings | None = None,
    *,
    catalog: AgentCatalog | None = None,
    stack_factory: StackFactory | None = None,
    extra_routers: Sequence[APIRouter] = (),
    extra_lifespans: Sequence[Lifespan] = (),
    session_hooks: Sequence[SessionHook] = (),
) -> FastAPI:
    """Build the app.

    ``stack_factory`` replaces the embedded models (tests, load benchmarks). ``extra_lifespans`` are
    entered in order at startup, after the models start warming, and exited in reverse at shutdown,
    after live sessions have drained (e.g. to open the store that ``extra_routers`` use).
    """
    settings = settings or get_settings()
    catalog = catalog or AgentCatalog(extra_dir=settings.agents_dir)
    runtime = LiveRuntime(settings, Engines(catalog, stack_factory), session_hooks=session_hooks)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        warming = asyncio.create_task(_warm(runtime))
        try:
            async with contextlib.AsyncExitStack() as stack:
                for extra in extra_lifespans:
                    await stack.enter_async_context(extra(app))
                try:
                    yield
                finally:
                    await _drain(runtime)
        finally:
            warming.cancel()
            await runtime.engines.close()

    app = FastAPI(title="Parley", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.runtime = runtime
    install_error_handlers(app)
    install_request_limits(app, settings)
    app.include_router(_service_router(runtime))
    app.include_router(ws_router(runtime))
    app.include_router(webrtc_router(runtime))
    app.include_router(twilio_stream_router(runtime))
    for router in extra_routers:
        app.include_router(router)
    app.mount("/voice", StaticFiles(directory=WEB_DIR, html=True), name="voice")
    _offline_docs(app)
    return app


def _offline_docs(app: FastAPI) -> None:
    """``/docs`` with Swagger UI's files served by Parley: FastAPI's default page fetches them from a
    CDN, so offline it stays blank. ReDoc (CDN only as well) is not offered."""
    app.mount(DOCS_ASSETS, StaticFiles(directory=Path(str(swagger_ui_path))), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        assets = root + DOCS_ASSETS
        return get_swagger_ui_html(
            openapi_url=root + (app.openapi_url or "/openapi.json"),
            title="Parley API",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon-32x32.png",
            oauth2_redirect_url=None,
        )


async def _drain(runtime: LiveRuntime) -> None:
    """At shutdown: a no-op after a signal-driven drain, else the same drain now."""
    if not runtime.draining or len(runtime.registry):
        await runtime.drain(runtime.settings.shutdown_grace_s)


async def _warm(runtime: LiveRuntime) -> None:
    try:
        await runtime.engines.warm_up()
    except asyncio.CancelledError:
        raise
    except Exception:  # kept in engines.error: /readyz reports it and sessions are refused
        log.exception("loading the models failed")
        return
    # Everything alive now (libraries, models) lives as long as the process: move it out of the
    # collector's sight, so full collections, which pause every live call, stay short.
    gc.collect()
    gc.freeze()


def _service_router(runtime: LiveRuntime) -> APIRouter:
    router = APIRouter()
    settings = runtime.settings

    @router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def root(request: Request) -> RedirectResponse:
        query = request.url.query
        return RedirectResponse("/voice/" + (f"?{query}" if query else ""))

    @router.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """The process is up and its event loop answers."""
        return {"status": "ok", "active_sessions": len(runtime.registry)}

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        """Models loaded and warm, new sessions accepted, and the stores answering: the database and,
        when ``PARLEY_REDIS_URL`` is set, Redis (``degraded``, naming each one down, within ~2 s)."""
        engines = runtime.engines
        if runtime.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        if engines.error is not None:
            return JSONResponse({"status": "failed", "error": repr(engines.error)}, status_code=503)
        if not engines.ready.is_set():
            return JSONResponse({"status": "loading"}, status_code=503)
        if runtime.platform is not None:  # calls go on the books: a worker without its stores is not ready
            down = await _stores_down(runtime.platform.db.ping, runtime.platform.settings.redis_url)
            if down:
                return JSONResponse({"status": "degraded", "error": "; ".join(down)}, status_code=503)
        return JSONResponse(
            {
                "status": "ready",
                "active_sessions": len(runtime.registry),
                "max_sessions": settings.max_concurrent_sessions,
            }
        )

    @router.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(runtime.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @router.get("/v1/realtime/config")
    async def realtime_config(agent: Annotated[str | None, Query(max_length=200)] = None) -> dict[str, Any]:
        """What the voice page needs to connect: transports offered, audio format, agents (with
        ``agent``: whether that one can be selected, or the error ``start`` would give)."""
        return {
            **await runtime.agent_offer(agent),
            "enabled": settings.realtime_enabled,
            "transports": {"ws": "/v1/sessions/ws", "webrtc": "/v1/sessions/webrtc"},
            "audio": {
                "sample_rate": settings.audio_sample_rate,
                "frame_ms": settings.audio_frame_ms,
                "supported_sample_rates": list(SUPPORTED_SAMPLE_RATES),
                "lead_ms": settings.audio_output_lead_ms,
            },
            "reconnect_grace_s": settings.reconnect_grace_s,
        }

    return router


async def ping_redis(url: str, timeout_s: float = READY_REDIS_TIMEOUT_S) -> None:
    """One PING on a connection of its own (raises when Redis cannot be reached within ``timeout_s``):
    the timeline's client may be busy in blocking reads, and a probe must not wait behind them."""
    from redis.asyncio import Redis

    client = Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    try:
        await client.ping()
    finally:
        await client.aclose()


async def _stores_down(ping_database: Callable[[], Awaitable[None]], redis_url: str | None) -> list[str]:
    """``"<store>: <error>"`` for each store a worker needs that does not answer in time: the database,
    and Redis when it carries the timeline. Both are asked at once, so the probe takes at most ~2 s."""
    checks: dict[str, tuple[Awaitable[None], float]] = {"database": (ping_database(), READY_DB_TIMEOUT_S)}
    if redis_url:
        checks["redis"] = (ping_redis(redis_url), READY_REDIS_TIMEOUT_S)
    results = await asyncio.gather(
        *(asyncio.wait_for(check, timeout) for check, timeout in checks.values()), return_exceptions=True
    )
    down = []
    for name, result in zip(checks, results, strict=True):
        if isinstance(result, TimeoutError):  # wait_for's, caused by the cancellation: say it timed out
            down.append(f"{name}: TimeoutError")
        elif isinstance(result, OSError | DBAPIError | RedisError):
            down.append(f"{name}: {type(result.__cause__ or result).__name__}")
        elif isinstance(result, BaseException):  # not an outage: a bug, reported as one
            raise result
    return down


def with_platform(settings: Settings) -> Lifespan:
    """A lifespan that opens the store (migrations, recovery, persister) for the REST API and makes
    every live session a call on the books; pass it with ``platform_routers()`` to ``create_app``."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from parley.platform.runtime import Platform

        platform = await Platform.open(settings)
        app.state.platform = platform
        runtime: LiveRuntime = app.state.runtime
        runtime.platform = platform
        await runtime.record_file_agents()
        try:
            yield
        finally:
            runtime.platform = None
            await platform.close()

    return lifespan


def create_platform_app(settings: Settings | None = None, **options: Any) -> FastAPI:
    """The full server: live voice plus the platform's store and REST API."""
    from parley.server.notifications import with_notifications
    from parley.server.rooms import with_rooms
    from parley.server.routes import platform_routers
    from parley.server.telephony import with_telephony
    from parley.server.webhooks import with_webhooks

    settings = settings or get_settings()
    return create_app(
        settings,
        extra_routers=platform_routers(),
        extra_lifespans=[
            with_platform(settings),
            with_rooms(settings),
            with_telephony(settings),
            with_webhooks(settings),
            with_notifications(settings),
        ],
        **options,
    )
