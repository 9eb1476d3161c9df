"""Lead texts through Twilio Messages (the official client, via ``telephony/rest.TwilioRest``).

The From number is ``PARLEY_SMS_FROM``, else the organization's first phone number. With
``PARLEY_PUBLIC_URL`` set, each message asks Twilio for status callbacks at
``/twilio/sms-status?notification=<id>`` (``server/routes/sms_status.py``), which move the notification to
``delivered`` or ``failed``; without it a text stays ``sent`` (Twilio accepted it).
https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource
"""

from __future__ import annotations

from urllib.parse import urlencode

from sqlalchemy import select

from parley.config import Settings
from parley.notifications.errors import PermanentDeliveryError, TransientDeliveryError
from parley.store.db import Database
from parley.store.models import Call, PhoneNumber
from parley.telephony.rest import TwilioRest, TwilioRestError

STATUS_PATH = "/twilio/sms-status"
_RETRYABLE_STATUS = frozenset({401, 403, 429})
"""Twilio's answers that are about the account (its credentials, its rate) rather than this message."""


async def sender_number(
    db: Database, settings: Settings, org_id: str, call_id: str | None = None
) -> str | None:
    """The number an organization's texts come from: ``PARLEY_SMS_FROM`` (the operator's choice, e.g. the
    one number registered for texting), else, for a call's text, the organization's number on that call
    (the one the caller dialled, or called from), else its first phone number."""
    if settings.sms_from:
        return settings.sms_from
    async with db.session() as session:
        if call_id is not None:
            call = await session.get(Call, call_id)
            line = None
            if call is not None and call.org_id == org_id:
                line = call.from_number if call.direction == "outbound" else call.to_number
            if line:
                owned = await session.scalar(
                    select(PhoneNumber.number).where(PhoneNumber.org_id == org_id, PhoneNumber.number == line)
                )
                if owned is not None:
                    return owned
        number = await session.scalar(
            select(PhoneNumber.number)
            .where(PhoneNumber.org_id == org_id)
            .order_by(PhoneNumber.created_at, PhoneNumber.id)
            .limit(1)
        )
    return number


class SmsSender:
    def __init__(self, rest: TwilioRest, db: Database, settings: Settings) -> None:
        self.rest = rest
        self.db = db
        self.settings = settings

    async def from_number(self, org_id: str, call_id: str | None = None) -> str | None:
        return await sender_number(self.db, self.settings, org_id, call_id)

    def status_callback(self, notification_id: str) -> str | None:
        """Where Twilio reports this text's progress (None without ``PARLEY_PUBLIC_URL``)."""
        if not self.settings.public_url:
            return None
        query = urlencode({"notification": notification_id})
        return f"{self.settings.public_url.rstrip('/')}{STATUS_PATH}?{query}"

    async def send(
        self, notification_id: str, org_id: str, to: str, body: str, *, call_id: str | None = None
    ) -> str:
        """Ask Twilio to send the text; returns its Message SID once Twilio accepted it (HTTP 201). A
        call's text comes from that call's line (``sender_number``)."""
        from_ = await self.from_number(org_id, call_id)
        if from_ is None:  # the operator may still add a number: worth retrying
            raise TransientDeliveryError(
                "no number to text from: set PARLEY_SMS_FROM or add a phone number to the organization"
            )
        try:
            return await self.rest.send_sms(
                to, from_, body, status_callback=self.status_callback(notification_id)
            )
        except TwilioRestError as exc:
            if exc.status is None or exc.status >= 500 or exc.status in _RETRYABLE_STATUS:
                raise TransientDeliveryError(str(exc)) from exc
            raise PermanentDeliveryError(str(exc)) from exc
