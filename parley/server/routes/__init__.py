"""The platform's REST API (``/v1/...``), as routers the app includes.

The app must put an open ``parley.platform.runtime.Platform`` in ``app.state.platform`` (open it in
the lifespan, close it at shutdown); every route authenticates with an API key (``server/auth.py``).
"""

from __future__ import annotations

from fastapi import APIRouter


def platform_routers() -> list[APIRouter]:
    from parley.server import room_phone, rooms
    from parley.server.routes import (
        agents,
        calls,
        documents,
        numbers,
        outbound,
        secrets,
        twilio,
        usage,
        webhooks,
    )

    return [
        agents.router,
        documents.router,
        outbound.router,
        calls.router,
        usage.router,
        secrets.router,
        numbers.router,
        twilio.router,
        webhooks.router,
        room_phone.router,  # before rooms.router: its fixed paths under /v1/rooms/ are no room ids
        rooms.router,
    ]
