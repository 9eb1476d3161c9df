"""The local Twilio on a free port in the test's event loop, and a tiny application for it to call.

``twilio_sim`` is the simulator (``TwilioSim``: script callees with ``twilio_sim.script(number, …)``, read
``twilio_sim.calls``); ``twilio_client`` is the official ``twilio.rest.Client`` pointed at it (blocking:
call it through ``asyncio.to_thread``); ``app_side`` is a FastAPI receiver standing in for Parley: it
records every webhook with its signature checked, answers the voice URL with ``app_side.twiml`` and
serves a Media Streams endpoint at ``app_side.stream_url``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Generator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import pytest
import uvicorn
from fastapi import FastAPI, Request, Response, WebSocket, WebSocketDisconnect
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped, unused-ignore]
from twilio.rest import Client  # type: ignore[import-untyped, unused-ignore]

from parley.audio.codecs import ulaw_decode
from parley.telephony.rest import RedirectingHttpClient
from parley.twilio_sim.server import TwilioSim, serving

ACCOUNT_SID = "AC" + "5e" * 16
AUTH_TOKEN = "sim-auth-token-0123456789abcdef"


@pytest.fixture
async def twilio_sim() -> AsyncIterator[TwilioSim]:
    """A local Twilio with a known account, serving on a free port for the test's duration."""
    async with serving(TwilioSim(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN)) as sim:
        yield sim


@pytest.fixture
def twilio_client(twilio_sim: TwilioSim) -> Client:
    assert twilio_sim.base_url is not None
    return Client(ACCOUNT_SID, AUTH_TOKEN, http_client=RedirectingHttpClient(twilio_sim.base_url))


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@contextlib.asynccontextmanager
async def serve_app(app: FastAPI) -> AsyncIterator[str]:
    """Serve ``app`` on a free port in this loop; yields its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait({task}, timeout=10)


async def until(condition: Callable[[], bool], limit_s: float = 10.0) -> None:
    """Wait for a condition on state that has no event of its own (what a caller heard or said)."""
    async with asyncio.timeout(limit_s):
        while not condition():  # noqa: ASYNC110  (audio arrives frame by frame, with nothing to wait on)
            await asyncio.sleep(0.05)


@dataclass
class Received:
    path: str
    url: str
    params: dict[str, str]
    signed: bool
    """The ``X-Twilio-Signature`` checks out with twilio's ``RequestValidator``."""


@dataclass
class StreamSession:
    """What Parley's stream endpoint saw of one Media Stream."""

    signed: bool
    start: dict[str, Any] | None = None
    events: list[str] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    """The caller's audio as 8 kHz PCM16 bytes."""
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def voiced_s(self) -> float:
        import numpy as np

        pcm = np.frombuffer(bytes(self.audio), dtype=np.int16)
        return float(np.count_nonzero(np.abs(pcm) > 1000)) / 8000


class AppSide:
    """Parley's side as Twilio sees it: webhooks and a stream endpoint."""

    def __init__(self) -> None:
        self.base = ""
        self.received: list[Received] = []
        self.streams: list[StreamSession] = []
        self.twiml: str | None = None
        """What the voice URL answers; None: ``<Connect><Stream>`` to ``stream_url`` with call_id=c1."""
        self.hold_stream_s: float | None = None
        """Close each stream this long after ``start`` (None: hold until Twilio ends it)."""
        self.speak: bytes = b""
        """μ-law the endpoint sends once the stream starts (the agent's greeting)."""
        self._changed = asyncio.Event()
        self.validator = RequestValidator(AUTH_TOKEN)
        self.app = self._build()

    @property
    def stream_url(self) -> str:
        return self.base.replace("http://", "ws://") + "/stream"

    def url(self, path: str) -> str:
        return self.base + path

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def wait_for(self, path: str, count: int = 1, limit_s: float = 10.0) -> list[Received]:
        async with asyncio.timeout(limit_s):
            while len(self.at(path)) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.at(path)

    async def wait_stream(self, limit_s: float = 10.0) -> StreamSession:
        async with asyncio.timeout(limit_s):
            while not self.streams or self.streams[-1].start is None:
                self._changed.clear()
                await self._changed.wait()
        return self.streams[-1]

    def _stream_twiml(self) -> str:
        return (
            f'<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="{self.stream_url}">'
            '<Parameter name="call_id" value="c1"/></Stream></Connect></Response>'
        )

    def _record(self, request: Request, params: dict[str, str]) -> None:
        url = str(request.url)
        signature = request.headers.get("X-Twilio-Signature", "")
        signed = bool(signature) and self.validator.validate(url, params, signature)
        self.received.append(Received(request.url.path, url, params, signed))
        self._changed.set()

    def _build(self) -> FastAPI:
        app = FastAPI()

        @app.post("/voice")
        @app.post("/next")
        async def voice(request: Request) -> Response:
            self._record(request, dict(parse_qsl((await request.body()).decode())))
            return Response(self.twiml or self._stream_twiml(), media_type="application/xml")

        @app.post("/status")
        @app.post("/amd")
        @app.post("/sms")
        async def callback(request: Request) -> Response:
            self._record(request, dict(parse_qsl((await request.body()).decode())))
            return Response(status_code=204)

        @app.websocket("/stream")
        async def stream(ws: WebSocket) -> None:
            signature = ws.headers.get("x-twilio-signature", "")
            session = StreamSession(signed=self.validator.validate(self.stream_url, {}, signature))
            self.streams.append(session)
            await ws.accept()
            try:
                await self._serve_stream(ws, session)
            except WebSocketDisconnect:
                pass
            finally:
                session.closed.set()
                self._changed.set()

        return app

    async def _serve_stream(self, ws: WebSocket, session: StreamSession) -> None:
        loop = asyncio.get_running_loop()
        started: float | None = None
        while True:
            hold = self.hold_stream_s  # read each time: a test may end a held stream by setting it
            timeout = None if started is None or hold is None else max(0.0, started + hold - loop.time())
            try:
                text = await asyncio.wait_for(ws.receive_text(), timeout)
            except TimeoutError:
                await ws.close()
                return
            message = json.loads(text)
            event = message["event"]
            session.events.append(event)
            if event == "start":
                session.start = message["start"]
                self._changed.set()
                started = loop.time()
                if self.speak:
                    stream_sid = message["streamSid"]
                    for i in range(0, len(self.speak), 160):
                        chunk = base64.b64encode(self.speak[i : i + 160]).decode()
                        media = {"event": "media", "streamSid": stream_sid, "media": {"payload": chunk}}
                        await ws.send_text(json.dumps(media))
            elif event == "media":
                session.audio += ulaw_decode(base64.b64decode(message["media"]["payload"])).tobytes()
            elif event == "stop":
                self._changed.set()
                return


@pytest.fixture
async def app_side() -> AsyncIterator[AppSide]:
    side = AppSide()
    async with serve_app(side.app) as base:
        side.base = base
        yield side
