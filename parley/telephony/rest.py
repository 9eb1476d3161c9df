"""Twilio's REST API as Parley uses it: place a call, hang one up, send one on, send an SMS.

Calls go through the official library (``twilio.rest.Client``); its HTTP client is subclassed only to
send requests to another origin (``Settings.twilio_api_base_url``, e.g. the local Twilio in tests). The
library blocks, so every call runs in a worker thread. Request shapes:
https://www.twilio.com/docs/voice/api/call-resource (create: ``StatusCallbackEvent``, ``MachineDetection``,
``AsyncAmd``; update: ``Status``, ``Twiml``) and https://www.twilio.com/docs/messaging/api/message-resource
(twilio-python: ``twilio/rest/api/v2010/account/call/__init__.py``, ``.../message/__init__.py``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
import structlog
from twilio.base.exceptions import TwilioException, TwilioRestException  # type: ignore[import-untyped]
from twilio.http.http_client import TwilioHttpClient  # type: ignore[import-untyped]
from twilio.rest import Client  # type: ignore[import-untyped]

from parley.config import Settings
from parley.telephony.twiml import transfer_twiml

log = structlog.get_logger("parley.telephony")

T = TypeVar("T")

TWILIO_API = "https://api.twilio.com"
_TWILIO_API_HOST = re.compile(r"^api(\.[a-z0-9-]+)*\.twilio\.com$")
"""``api.twilio.com`` and its regional/edge spellings (``api.dublin.ie1.twilio.com``)."""
STATUS_EVENTS = ["initiated", "ringing", "answered", "completed"]
INVALID_NUMBER = 21211
NOT_FOUND = 20404


class TwilioRestError(Exception):
    """Twilio refused a request (``code`` is Twilio's error code, e.g. 21211 invalid number, 20404 not
    found), or could not be reached (``code`` and ``status`` None)."""

    def __init__(self, code: int | None, message: str, status: int | None) -> None:
        super().__init__(f"Twilio error {code}: {message}" if code is not None else message)
        self.code = code
        self.message = message
        self.status = status


class RedirectingHttpClient(TwilioHttpClient):  # type: ignore[misc]  # the library has no type hints
    """Twilio's own HTTP client, sending what would go to Twilio's API to ``base_url`` instead."""

    def __init__(self, base_url: str, *, timeout: float | None = None) -> None:
        super().__init__(timeout=timeout)
        self.base_url = base_url.rstrip("/")

    def rewrite(self, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme != "https" or not _TWILIO_API_HOST.match(parts.hostname or ""):
            return url
        return self.base_url + parts.path + (f"?{parts.query}" if parts.query else "")

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        return super().request(method, self.rewrite(url), *args, **kwargs)


class TwilioRest:
    def __init__(
        self, account_sid: str, auth_token: str, *, api_base_url: str = TWILIO_API, timeout_s: float = 10.0
    ) -> None:
        if api_base_url.rstrip("/") == TWILIO_API:
            http = TwilioHttpClient(timeout=timeout_s)
        else:
            http = RedirectingHttpClient(api_base_url, timeout=timeout_s)
        self.account_sid = account_sid
        self.client = Client(account_sid, auth_token, account_sid=account_sid, http_client=http)

    @classmethod
    def from_settings(cls, settings: Settings) -> TwilioRest | None:
        """The client for the configured account, or None when Twilio is not configured."""
        token = settings.twilio_auth_token
        if not settings.twilio_account_sid or token is None or not token.get_secret_value():
            return None
        return cls(
            settings.twilio_account_sid, token.get_secret_value(), api_base_url=settings.twilio_api_base_url
        )

    async def place_call(
        self,
        *,
        to: str,
        from_: str,
        url: str | None = None,
        status_callback: str,
        amd_callback: str | None = None,
        timeout_s: int | None = None,
        twiml: str | None = None,
    ) -> str:
        """Dial ``to``; Twilio fetches ``url`` for TwiML once answered (or runs ``twiml``, given instead)
        and posts every progress event to ``status_callback``. With ``amd_callback``, answering-machine
        detection runs alongside the call (asynchronous, waiting for the end of a greeting so a voicemail
        is left after the beep) and its verdict is posted there. Returns the CallSid."""
        if (url is None) == (twiml is None):
            raise ValueError("place_call takes either url or twiml")
        instructions: dict[str, Any] = {"url": url, "method": "POST"} if url else {"twiml": twiml}
        options: dict[str, Any] = {
            "to": to,
            "from_": from_,
            **instructions,
            "status_callback": status_callback,
            "status_callback_method": "POST",
            "status_callback_event": STATUS_EVENTS,
        }
        if timeout_s is not None:
            options["timeout"] = timeout_s
        if amd_callback is not None:
            options.update(
                machine_detection="DetectMessageEnd",
                async_amd="true",
                async_amd_status_callback=amd_callback,
                async_amd_status_callback_method="POST",
            )
        call = await self._run("place a call", lambda: self.client.calls.create(**options))
        sid = str(call.sid)
        log.info("placed a call", call_sid=sid, to=to)
        return sid

    async def hang_up(self, sid: str) -> None:
        """End a call (an answered one hangs up; Twilio cancels one still ringing)."""
        await self._run("hang up", lambda: self.client.calls(sid).update(status="completed"))

    async def transfer(self, sid: str, target: str) -> None:
        """Send a live call on to ``target`` (E.164 or ``sip:``): its TwiML is replaced by a ``<Dial>``,
        which also ends the media stream."""
        twiml = transfer_twiml(target)
        await self._run("transfer", lambda: self.client.calls(sid).update(twiml=twiml))
        log.info("transferred a call", call_sid=sid)

    async def send_sms(self, to: str, from_: str, body: str, *, status_callback: str | None = None) -> str:
        """Send a text message; returns its MessageSid. Twilio posts the message's progress (sent,
        delivered, undelivered, failed) to ``status_callback`` when given."""
        options: dict[str, Any] = {"to": to, "from_": from_, "body": body}
        if status_callback is not None:
            options["status_callback"] = status_callback
        message = await self._run("send an SMS", lambda: self.client.messages.create(**options))
        return str(message.sid)

    async def _run(self, what: str, request: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(request)
        except TwilioRestException as exc:
            log.warning(
                "Twilio refused a request", action=what, code=exc.code, status=exc.status, error=exc.msg
            )
            raise TwilioRestError(exc.code, str(exc.msg), exc.status) from exc
        except (requests.RequestException, TwilioException) as exc:
            log.warning("Twilio's API could not be reached", action=what, error=repr(exc))
            raise TwilioRestError(None, f"could not {what}: {exc}", None) from exc


class NoCarrier:
    """The dialer where Twilio is not configured (the CLI queueing a call, a server without Twilio):
    every call is refused, so nothing is dialed by accident."""

    async def place_call(
        self,
        *,
        to: str,
        from_: str,
        url: str,
        status_callback: str,
        amd_callback: str | None = None,
        timeout_s: int | None = None,
    ) -> str:
        raise TwilioRestError(None, "Twilio is not configured (PARLEY_TWILIO_ACCOUNT_SID, _AUTH_TOKEN)", None)
