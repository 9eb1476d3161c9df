"""``POST /twilio/sms-status``: Twilio's status callbacks for texts (leads' and calls'), signed and
checked exactly like the voice webhooks (``telephony/signatures.py``; 403 for a bad signature, 503 while
Twilio is not configured).

``MessageStatus`` moves the notification named in the URL (``?notification=``, which Parley put there and
Twilio signed): ``sent`` → sent, ``delivered`` → delivered, ``undelivered``/``failed`` → failed with
Twilio's ``ErrorCode``; ``queued``, ``accepted`` and ``sending`` change nothing.
https://www.twilio.com/docs/messaging/guides/track-outbound-message-status

A callback that names no known notification, or one already further on, is logged and answered 204:
Twilio cannot fix it by sending it again.
"""

from __future__ import annotations

import re
from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status

from parley.config import Settings
from parley.server.auth import PlatformDep, get_platform
from parley.store.notifications import NotificationRepository, NotificationStatus
from parley.store.types import utcnow
from parley.telephony.signatures import TwilioWebhook, twilio_webhook

log = structlog.get_logger("parley.server.sms_status")

router = APIRouter(prefix="/twilio", tags=["twilio"])

_MESSAGE_SID = re.compile(r"^(SM|MM)[0-9a-fA-F]{32}$")
_ERROR_CODE = re.compile(r"^\d{1,6}$")
MOVES = {
    "sent": NotificationStatus.SENT,
    "delivered": NotificationStatus.DELIVERED,
    "undelivered": NotificationStatus.FAILED,
    "failed": NotificationStatus.FAILED,
}
"""Twilio's MessageStatus values that change a notification (the others are steps before ``sent``)."""


def _settings(request: Request) -> Settings:
    return get_platform(request).settings


Webhook = Annotated[TwilioWebhook, Depends(twilio_webhook(_settings))]
NotificationQ = Annotated[
    str, Query(max_length=40, pattern=r"^ntf_[0-9a-f]{1,34}$", description="the notification texted")
]


@router.post("/sms-status", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def sms_status(
    request: Request, hook: Webhook, platform: PlatformDep, notification: NotificationQ
) -> Response:
    """A text's progress (a lead notification, or a call's ``send_sms``), from Twilio's status callback."""
    sid = hook.get("MessageSid") or ""
    if not _MESSAGE_SID.match(sid):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "MessageSid missing or malformed")
    raw = (hook.get("MessageStatus") or "").lower()
    move = MOVES.get(raw)
    if move is None:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    error = None
    if move is NotificationStatus.FAILED:
        code = hook.get("ErrorCode") or ""
        error = f"twilio:{code} {raw}" if _ERROR_CODE.match(code) else f"twilio: {raw}"
    async with platform.db.session() as session:
        moved = await NotificationRepository(session).sms_status(notification, sid, move, utcnow(), error)
    if moved:
        log.info("text status", notification_id=notification, message_sid=sid, status=raw)
        if raw in ("delivered", "undelivered", "failed"):
            runtime = getattr(request.app.state, "runtime", None)
            if runtime is not None:
                runtime.metrics.notification("sms", raw)
    else:
        log.info("text status changed nothing", notification_id=notification, message_sid=sid, status=raw)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
