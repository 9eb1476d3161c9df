"""Deepgram Aura speech: the streaming socket (``/v1/speak``), or one streamed REST request a phrase.

Over the socket each phrase is ``{"type": "Speak", "text": …}`` then ``{"type": "Flush"}``; audio comes
back as binary frames until ``{"type": "Flushed"}``. A consumer that stops early (barge-in) gets the socket
a ``{"type": "Clear"}``: Deepgram drops what it had not sent and answers ``Cleared``, and only then does the
socket go back to the pool. Sockets are kept open between phrases (a handshake is most of a phrase's
first-byte latency) and retired with ``{"type": "Close"}`` before Deepgram's limit of 20 flushes a minute
per socket, or once idle for long. A pooled socket that turns out to be closed is replaced before any
audio, so a phrase is never said twice.

The REST fallback (``transport: rest``) posts each phrase to ``/v1/speak`` with ``container=none`` and
streams the body, through the official SDK (``AsyncDeepgramClient.speak.v1.audio.generate``).

Why raw ``websockets`` for the socket and not the SDK: see ``parley.providers.deepgram_wire``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import warnings
from collections.abc import AsyncGenerator, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import numpy as np
import structlog
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from parley.audio.codecs import ulaw_decode
from parley.audio.frame import PCM16
from parley.providers.deepgram_wire import (
    DEFAULT_BASE_URL,
    PROVIDER,
    close_error,
    http_base,
    open_socket,
    query,
    status_error,
    ws_url,
)
from parley.providers.errors import ProviderCallError, ProviderRejected, ProviderUnavailable
from parley.redaction import excerpt

log = structlog.get_logger("parley.providers.tts.deepgram")

FLUSH = json.dumps({"type": "Flush"})
CLEAR = json.dumps({"type": "Clear"})
CLOSE = json.dumps({"type": "Close"})
MAX_TEXT_CHARS = 2000
"""Longest text sent at once (Deepgram's limit for one synthesis request); a reply's clauses are far
shorter, so a longer one is a bug upstream, refused rather than cut."""

Encoding = Literal["linear16", "mulaw"]


@dataclass(slots=True)
class _Socket:
    """One open ``/v1/speak`` socket and how much of its flush budget it used."""

    connection: ClientConnection
    flushes: int = 0
    idle_since: float = field(default_factory=time.monotonic)

    @property
    def open(self) -> bool:
        return self.connection.state is State.OPEN


class _StaleSocket(Exception):
    """A pooled socket was closed before it gave any audio: try a fresh one."""


@dataclass(slots=True)
class SpeakStats:
    """What the voice did on the wire (tests and logs)."""

    sockets_opened: int = 0
    clears: int = 0
    retired: int = 0
    warnings: list[str] = field(default_factory=list)
    request_ids: list[str] = field(default_factory=list)


class DeepgramSynthesizer:
    """Aura voices; one instance is shared by every call that uses the same voice and key."""

    name = "deepgram"

    def __init__(
        self,
        api_key: str,
        *,
        model: str = "aura-2-thalia-en",
        encoding: Encoding = "linear16",
        sample_rate: int = 24_000,
        transport: Literal["websocket", "rest"] = "websocket",
        base_url: str = DEFAULT_BASE_URL,
        connect_timeout: float = 5.0,
        timeout: float = 10.0,
        max_idle_sockets: int = 4,
        idle_seconds: float = 20.0,
        flushes_per_socket: int = 15,
    ) -> None:
        if not api_key:
            raise ValueError("Deepgram needs an API key")
        if flushes_per_socket < 1 or max_idle_sockets < 0:
            raise ValueError("flushes_per_socket must be positive and max_idle_sockets not negative")
        self.model = model
        self.encoding: Encoding = encoding
        self.sample_rate = sample_rate
        self.transport = transport
        self.base_url = base_url
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.max_idle_sockets = max_idle_sockets
        self.idle_seconds = idle_seconds
        self.flushes_per_socket = flushes_per_socket
        self.stats = SpeakStats()
        self._api_key = api_key
        self._url = ws_url(
            base_url,
            "/v1/speak",
            query({"model": model, "encoding": encoding, "sample_rate": sample_rate}),
        )
        self._idle: list[_Socket] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._rest: Any = None
        self._http: httpx.AsyncClient | None = None

    # --- the SpeechSynthesizer Protocol ----------------------------------------------------------

    async def synthesize(self, text: str) -> AsyncGenerator[PCM16, None]:
        text = text.strip()
        if not text:
            return
        if len(text) > MAX_TEXT_CHARS:
            raise ProviderRejected(
                f"Deepgram speaks at most {MAX_TEXT_CHARS} characters at once, got {len(text)}",
                provider=PROVIDER,
            )
        self._bind_loop()
        speech = self._speak_rest(text) if self.transport == "rest" else self._speak_socket(text)
        async with contextlib.aclosing(speech) as pieces:  # a consumer that stops stops the socket now
            async for pcm in pieces:
                yield pcm

    async def warm_up(self) -> None:
        """Open one socket ahead, so the first phrase skips the handshake. A failure here is only
        logged: the first phrase reports it, where failover can act on it."""
        if self.transport != "websocket":
            return
        self._bind_loop()
        try:
            self._release(await self._open())
        except ProviderCallError as exc:
            log.warning("deepgram voice could not open a socket ahead", error=str(exc))

    @property
    def idle_sockets(self) -> int:
        """Sockets open and waiting for the next phrase."""
        return len(self._idle)

    async def settle(self) -> None:
        """Until the work done behind a phrase's back (a Clear answered, a socket closed) is over."""
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    async def aclose(self) -> None:
        """Close pooled sockets (politely: ``Close``) and the REST client."""
        idle, self._idle = self._idle, []
        for socket in idle:
            await self._close(socket)
        for task in list(self._background):
            task.cancel()
        if self._http is not None:
            await self._http.aclose()
            self._http, self._rest = None, None

    # --- the socket --------------------------------------------------------------------------

    async def _speak_socket(self, text: str) -> AsyncGenerator[PCM16, None]:
        for attempt in (1, 2):
            socket, pooled = await self._acquire()
            try:
                async with contextlib.aclosing(self._speak_on(socket, text, reused=pooled)) as pieces:
                    async for pcm in pieces:
                        yield pcm
                return
            except _StaleSocket:
                if attempt == 2:
                    raise ProviderUnavailable(
                        "Deepgram closed two sockets in a row before speaking", provider=PROVIDER
                    ) from None
                log.info("pooled deepgram socket was closed; speaking on a fresh one")

    async def _speak_on(self, socket: _Socket, text: str, *, reused: bool) -> AsyncGenerator[PCM16, None]:
        """One phrase on one socket. Whatever way this ends, the socket is pooled, cleared or closed."""
        spoken = False
        done = False
        carry = b""
        try:
            await socket.connection.send(json.dumps({"type": "Speak", "text": text}))
            await socket.connection.send(FLUSH)
            socket.flushes += 1
            while True:
                async with asyncio.timeout(self.timeout):
                    message = await socket.connection.recv()
                if isinstance(message, bytes):
                    pcm, carry = self._decode(carry + message)
                    if pcm.size:
                        spoken = True
                        yield pcm
                    continue
                if self._on_message(message) == "Flushed":
                    done = True
                    self._release(socket)
                    return
        except ConnectionClosed as exc:
            done = True
            self._discard(socket)
            if reused and not spoken:
                raise _StaleSocket from exc
            raise close_error("speech synthesis", exc, self._api_key) from exc
        except TimeoutError as exc:
            done = True
            self._discard(socket)
            raise ProviderUnavailable(
                f"Deepgram sent no audio for {self.timeout:.1f}s", provider=PROVIDER
            ) from exc
        except ProviderCallError:
            done = True
            self._discard(socket)
            raise
        finally:
            if not done:  # the consumer stopped listening (barge-in) or was cancelled
                self._spawn(self._clear(socket))

    def _on_message(self, text: str) -> str:
        try:
            message: dict[str, Any] = json.loads(text)
        except json.JSONDecodeError:
            log.warning(
                "deepgram sent a message that is not JSON", excerpt=excerpt(text, 200, [self._api_key])
            )
            return ""
        kind = str(message.get("type", ""))
        if kind == "Metadata" and isinstance(message.get("request_id"), str):
            self.stats.request_ids.append(message["request_id"])
        elif kind == "Warning":
            warning = excerpt(
                f"{message.get('code', '')}: {message.get('description', '')}", 300, [self._api_key]
            )
            self.stats.warnings.append(warning)
            log.warning("deepgram voice warning", warning=warning)
        elif kind == "Error":
            description = excerpt(
                str(message.get("description") or message.get("err_msg") or ""), 300, [self._api_key]
            )
            raise ProviderRejected(f"Deepgram reported an error: {description}", provider=PROVIDER)
        return kind

    async def _clear(self, socket: _Socket) -> None:
        """Stop a phrase nobody listens to: Clear, wait for Cleared, then the socket is reusable."""
        self.stats.clears += 1
        try:
            await socket.connection.send(CLEAR)
            async with asyncio.timeout(self.timeout):
                while True:
                    message = await socket.connection.recv()
                    if isinstance(message, str) and self._on_message(message) == "Cleared":
                        break
        except (ConnectionClosed, TimeoutError, ProviderCallError) as exc:
            log.info("deepgram socket not reusable after Clear", error=repr(exc))
            self._discard(socket)
            return
        self._release(socket)

    def _decode(self, data: bytes) -> tuple[PCM16, bytes]:
        if self.encoding == "mulaw":
            return ulaw_decode(data), b""
        whole = len(data) - len(data) % 2
        pcm = np.frombuffer(data[:whole], dtype="<i2").astype(np.int16)
        return pcm, data[whole:]

    # --- the pool ------------------------------------------------------------------------------

    def _bind_loop(self) -> None:
        """Sockets belong to one event loop; a new loop (another test, a restarted server) starts anew."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            self._idle = []
            self._background = set()
            self._rest, self._http = None, None

    async def _acquire(self) -> tuple[_Socket, bool]:
        """A socket for one phrase, and whether it came from the pool (it may have closed meanwhile)."""
        now = time.monotonic()
        while self._idle:
            socket = self._idle.pop()
            if socket.open and now - socket.idle_since < self.idle_seconds:
                return socket, True
            self._spawn(self._close(socket))
        return await self._open(), False

    async def _open(self) -> _Socket:
        connection = await open_socket(
            self._url, self._api_key, what="speech synthesis", open_timeout=self.connect_timeout
        )
        self.stats.sockets_opened += 1
        return _Socket(connection)

    def _release(self, socket: _Socket) -> None:
        if (
            socket.open
            and socket.flushes < self.flushes_per_socket
            and len(self._idle) < self.max_idle_sockets
        ):
            socket.idle_since = time.monotonic()
            self._idle.append(socket)
            return
        self.stats.retired += 1
        self._spawn(self._close(socket))

    def _discard(self, socket: _Socket) -> None:
        self._spawn(self._close(socket))

    async def _close(self, socket: _Socket) -> None:
        with contextlib.suppress(ConnectionClosed, OSError):
            if socket.open:
                await socket.connection.send(CLOSE)
            await socket.connection.close()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # finalized outside the loop: the socket goes with it
            work.close()
            return
        task = loop.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- REST ----------------------------------------------------------------------------------

    def _rest_client(self) -> Any:
        """The SDK's ``speak.v1.audio`` client, one per event loop (its httpx client belongs to one)."""
        if self._rest is None:
            # Loading the SDK's speak package also loads its socket modules, which import websockets'
            # deprecated legacy names; the REST path never uses them, so their warnings are noise here.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"deepgram(\.|$)")
                warnings.filterwarnings("ignore", message=r"websockets\.", category=DeprecationWarning)
                from deepgram import AsyncDeepgramClient, DeepgramClientEnvironment

                base = http_base(self.base_url)
                sockets = ws_url(self.base_url, "", [])
                timeout = httpx.Timeout(self.timeout, connect=self.connect_timeout)
                self._http = httpx.AsyncClient(timeout=timeout)
                client = AsyncDeepgramClient(
                    api_key=self._api_key,
                    environment=DeepgramClientEnvironment(
                        base=base, production=sockets, agent=sockets, agent_rest=base
                    ),
                    httpx_client=self._http,
                    max_retries=0,  # retries are the failover layer's call, before the first byte
                )
                self._rest = client.speak.v1.audio
        return self._rest

    async def _speak_rest(self, text: str) -> AsyncGenerator[PCM16, None]:
        from deepgram.core import ApiError

        client = self._rest_client()
        carry = b""
        try:
            stream = client.generate(
                text=text,
                model=self.model,
                encoding=self.encoding,
                sample_rate=self.sample_rate,
                container="none",
            )
            async for chunk in stream:
                pcm, carry = self._decode(carry + chunk)
                if pcm.size:
                    yield pcm
        except ApiError as exc:
            raise status_error(
                "speech synthesis", exc.status_code or 0, _api_reason(exc.body), self._api_key
            ) from exc
        except httpx.TimeoutException as exc:
            raise ProviderUnavailable(
                f"Deepgram's speech request timed out: {exc!r}", provider=PROVIDER
            ) from exc
        except httpx.TransportError as exc:
            raise ProviderUnavailable(
                f"Deepgram could not be reached for speech synthesis: {exc!r}", provider=PROVIDER
            ) from exc


def _api_reason(body: object) -> str:
    """Deepgram's error body (``{"err_code", "err_msg", "request_id"}``) as one line."""
    if isinstance(body, dict):
        return str(body.get("err_msg") or body.get("message") or body.get("err_code") or "")
    return str(body or "")
