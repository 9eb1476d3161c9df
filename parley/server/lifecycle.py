"""Running the app under uvicorn with a graceful shutdown.

Uvicorn closes every WebSocket with 1012 the moment it starts shutting down. Live calls deserve
better, so the first SIGTERM/SIGINT only starts a drain: new sessions are refused (and /readyz says
so), live ones get up to ``shutdown_grace_s`` to finish, the rest are ended cleanly with a
``session.ended`` message; only then does uvicorn stop. A second signal stops at once.

Per-message deflate is off: compressing PCM costs CPU on every frame and saves almost nothing. The
keepalive (a ping every 10 s, 10 s to answer) finds clients that vanished without closing.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Awaitable, Callable
from types import FrameType

import uvicorn
from fastapi import FastAPI

from parley.config import Settings
from parley.server.runtime import LiveRuntime

log = logging.getLogger("parley.server")
WS_MAX_MESSAGE_BYTES = 1 << 20
"""Hard cap enforced by uvicorn (the socket is closed with 1009); the protocol's own, lower limits
answer with an error message instead."""


class DrainingServer(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        drain: Callable[[], Awaitable[None]],
        on_started: Callable[[DrainingServer], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(config)
        self._drain = drain
        self._on_started = on_started
        self._draining: asyncio.Task[None] | None = None

        self._announcer: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Once the socket listens, ``on_started`` runs alongside (e.g. to announce the URL when ready)."""
        await super().startup(sockets)
        if self._on_started is not None and self.started:
            self._announcer = asyncio.ensure_future(self._on_started(self))

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._announcer is not None:
            self._announcer.cancel()
        await super().shutdown(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._draining is not None or self.should_exit:
            super().handle_exit(sig, frame)
            self.force_exit = True
            return
        # A signal handler may run in the middle of the loop's own bookkeeping: hand over safely.
        asyncio.get_event_loop().call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        if self._draining is None:
            self._draining = asyncio.ensure_future(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        try:
            await self._drain()
        except Exception as exc:  # never keep the process alive because a drain went wrong
            log.error("parley: drain failed: %r", exc)
        self.should_exit = True

    async def begin_shutdown(self) -> None:
        """Programmatic equivalent of SIGTERM (tests, embedding)."""
        self._start_drain()
        assert self._draining is not None
        await self._draining


def make_server(
    app: FastAPI,
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    log_level: str = "info",
    on_started: Callable[[DrainingServer], Awaitable[None]] | None = None,
) -> DrainingServer:
    runtime: LiveRuntime = app.state.runtime
    config = uvicorn.Config(
        app,
        host=host or settings.host,
        port=settings.port if port is None else port,
        log_level=log_level,
        ws_max_size=WS_MAX_MESSAGE_BYTES,
        lifespan="on",
        ws_per_message_deflate=False,
        ws_ping_interval=10,
        ws_ping_timeout=10,
        timeout_graceful_shutdown=5,
    )
    return DrainingServer(
        config, drain=lambda: runtime.drain(settings.shutdown_grace_s), on_started=on_started
    )


class ListenError(Exception):
    """``host:port`` cannot be listened on; the message says why and what to do, in one line."""


def listen_socket(host: str, port: int) -> socket.socket:
    """Bind ``host:port`` before anything slow happens, so a taken port fails in a moment, not after
    the models have loaded. Hand the socket to ``DrainingServer.run(sockets=[...])``: nothing else can
    take the port in between."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # Like uvicorn: a server that just stopped (its connections in TIME_WAIT) is no obstacle; a
        # listening one still is.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except (OSError, OverflowError) as exc:
        sock.close()
        raise ListenError(_why_not(exc, host, port)) from exc
    return sock


def _why_not(exc: OSError | OverflowError, host: str, port: int) -> str:
    if isinstance(exc, OverflowError):
        return f"port {port} is out of range (0-65535); pass --port"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host {host!r}; pass --host with an address of this machine"
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} on {host} is in use; stop the other server or pass --port"
    if exc.errno == errno.EACCES:
        return f"no permission to listen on port {port} on {host}; pass --port with a port above 1023"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine; pass --host (e.g. 127.0.0.1 or 0.0.0.0)"
    return f"cannot listen on port {port} on {host}: {exc.strerror or exc}"


def bound_port(server: uvicorn.Server) -> int:
    """The port actually bound (useful with port 0)."""
    for listener in server.servers:
        for sock in listener.sockets:
            return int(sock.getsockname()[1])
    raise RuntimeError("server is not listening")
