"""Coached-room test kit: a served platform with the fast scripted engines, the REST calls a supervisor
makes, participants joining over real WebSockets, and ears that keep what each one heard on the room clock.

The server runs in the test's process, so the room clock (monotonic seconds) and ``now()`` here are the
same clock: a frame's play time says when the room mixed it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from parley.audio.frame import PCM16
from parley.audio.mixer import heard_tone_dbfs, tone_dbfs
from parley.platform.coached_room import CoachedRoom
from parley.platform.live_rooms import LiveRooms
from parley.platform.runtime import Platform
from parley.providers.llm.scripted import ScriptRule
from parley.store.tenants import TenantRepository
from parley.transports.ws_client import LiveClient, ReceivedFrame
from tests.server.conftest import Served, fast_engines, serving

KEY = "pk_coached-room-test-key"
HEADERS = {"Authorization": f"Bearer {KEY}"}
RATE = 16000
WHISPER_HZ = 440.0
"""The tone synthesizer's frequency: the AI coach's whisper."""
CUSTOMER_HZ = 220.0
REP_HZ = 330.0
COACH_HZ = 660.0
MS_PER_CHAR = 10.0
QUIET_TRIGGERS = [{"name": "dead_air", "enabled": False}, {"name": "long_monologue", "enabled": False}]
"""Off in tests: a pause while a test sets up must not whisper a hint of its own."""


@contextlib.asynccontextmanager
async def room_server(
    tmp_path: Path, lines: Sequence[str] = (), rules: Sequence[ScriptRule] = (), **overrides: Any
) -> AsyncIterator[Served]:
    """The full server (store, REST, rooms) whose recogniser hears ``lines`` in order (and whose
    scripted model answers by ``rules``)."""
    engines = fast_engines(list(lines), list(rules), ms_per_char=MS_PER_CHAR)
    async with serving(engines, platform=True, data_dir=tmp_path, api_key=KEY, **overrides) as served:
        yield served


@contextlib.asynccontextmanager
async def api(served: Served, headers: dict[str, str] | None = None) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=served.base, headers=HEADERS if headers is None else headers
    ) as http:
        yield http


def platform_of(served: Served) -> Platform:
    platform = served.runtime.platform
    assert platform is not None
    return platform


def rooms_of(served: Served) -> LiveRooms:
    app: Any = served.server.config.app
    rooms = app.state.rooms
    assert isinstance(rooms, LiveRooms)
    return rooms


def live_room(served: Served, room_id: str) -> CoachedRoom:
    room = rooms_of(served).find(room_id)
    assert room is not None, f"room {room_id} is not live"
    return room


async def other_org_headers(served: Served, slug: str = "acme") -> dict[str, str]:
    """An API key of another organization (made on first use)."""
    async with platform_of(served).db.session() as session:
        tenants = TenantRepository(session)
        org = await tenants.ensure_org(slug)
        key = await tenants.create_key(org.id, "test")
    return {"Authorization": f"Bearer {key.secret}"}


async def make_agent(http: httpx.AsyncClient, name: str = "sales", **coaching: Any) -> dict[str, Any]:
    settings = {"enabled": True, "use_llm": False, "whisper_hints": True, "triggers": QUIET_TRIGGERS}
    settings.update(coaching)
    made = await http.post("/v1/agents", json={"name": name, "config": {"name": name, "coaching": settings}})
    assert made.status_code == 201, made.text
    return dict(made.json())


async def open_room(http: httpx.AsyncClient, agent: str = "sales", **coaching: Any) -> dict[str, Any]:
    """An agent with coaching (rule hints, whispered) and a live room with it."""
    await make_agent(http, agent, **coaching)
    made = await http.post("/v1/rooms", json={"agent": agent, "name": "Renewal call"})
    assert made.status_code == 201, made.text
    return dict(made.json())


async def invite(http: httpx.AsyncClient, room_id: str, role: str, mode: str | None = None) -> dict[str, Any]:
    body = {"role": role} if mode is None else {"role": role, "mode": mode}
    made = await http.post(f"/v1/rooms/{room_id}/participants", json=body)
    assert made.status_code == 201, made.text
    return dict(made.json())


class Ear:
    """What one participant received: every audio frame with its play time on the room clock."""

    def __init__(self) -> None:
        self.frames: list[ReceivedFrame] = []
        self._new = asyncio.Event()

    def __call__(self, frame: ReceivedFrame) -> None:
        self.frames.append(frame)
        self._new.set()

    @property
    def heard_until(self) -> float:
        """Room clock (s) at the end of the last frame received."""
        if not self.frames:
            return 0.0
        last = self.frames[-1]
        return last.play_ms / 1000 + len(last.pcm) / RATE

    async def until(self, t: float, limit_s: float = 10.0) -> None:
        """Returns once frames up to room time ``t`` have arrived."""
        async with asyncio.timeout(limit_s):
            while self.heard_until < t:
                self._new.clear()
                await self._new.wait()

    def between(self, start: float, end: float) -> PCM16:
        """The audio mixed for this participant from ``start`` to ``end`` (room clock, seconds)."""
        chosen = [f.pcm for f in self.frames if start <= f.play_ms / 1000 < end]
        return np.concatenate(chosen) if chosen else np.zeros(0, np.int16)

    def level(self, start: float, end: float, frequency: float) -> float:
        """The tone's level, measured to show that it is absent (``tone_dbfs``)."""
        return tone_dbfs(self.between(start, end), RATE, frequency)

    def heard(self, start: float, end: float, frequency: float) -> float:
        """The tone's level as heard packet by packet (``heard_tone_dbfs``), to show that it is there."""
        return heard_tone_dbfs(self.between(start, end), RATE, frequency)


async def join(invitation: dict[str, Any], rate: int = RATE) -> tuple[LiveClient, Ear]:
    """Connect a participant's socket with its invitation and start it; returns once it is ``ready``."""
    ear = Ear()
    client = await LiveClient.connect(invitation["ws_url"], on_audio=ear)
    await client.send({"type": "start", "sample_rate": rate})
    ready = await client.wait_for(("ready", "error"), 5)
    assert ready["type"] == "ready", ready
    return client, ear


def tone(seconds: float, frequency: float, level: float = 0.3) -> PCM16:
    """Speech-like to the energy VAD: a steady tone, with 100 ms of silence either side."""
    t = np.arange(int(seconds * RATE)) / RATE
    body = (level * np.sin(2 * np.pi * frequency * t) * 32767).astype(np.int16)
    pad = np.zeros(int(0.1 * RATE), np.int16)
    return np.concatenate([pad, body, pad])
