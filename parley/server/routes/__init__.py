"""The platform's REST API (``/v1/...``), as routers the app includes.

The app must put an open ``parley.platform.runtime.Platform`` in ``app.state.platform`` (open it in
the lifespan, close it at shutdown); every route authenticates with an API key (``server/auth.py``).
"""

from __future__ import annotations

from fastapi import APIRouter


def platform_routers() -> list[APIRouter]:
    from parley.server import room_phone, rooms, supervision
    from parley.server.routes import (
        agents,
        callbacks,
        calls,
        documents,
        lead_pages,
        leads,
        notifications,
        numbers,
        outbound,
        secrets,
        sms_status,
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
        leads.router,
        callbacks.router,
        lead_pages.router,
        notifications.router,
        sms_status.router,
        room_phone.router,  # before rooms.router: its fixed paths under /v1/rooms/ are no room ids
        rooms.router,
        supervision.router,
    ]
