"""Checking that a webhook really comes from Twilio: ``X-Twilio-Signature`` over the URL and the form.

Twilio signs the exact URL it was given (scheme, host, path and query) followed by every POST parameter,
sorted, with HMAC-SHA1 keyed by the account's auth token (https://www.twilio.com/docs/usage/webhooks/webhooks-security;
twilio-python: ``twilio/request_validator.py``, whose ``RequestValidator`` does the arithmetic here).
Behind a TLS-terminating proxy the URL this server sees differs from the one Twilio signed, so
``Settings.public_url`` names the latter.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl

import structlog
from fastapi import HTTPException, Request, status
from twilio.request_validator import SIGNATURE_HEADER, RequestValidator  # type: ignore[import-untyped]

from parley.config import Settings

log = structlog.get_logger("parley.telephony")

MAX_WEBHOOK_BYTES = 64 * 1024
"""Twilio's webhooks carry a few dozen short fields; anything near this is not from Twilio."""
MAX_WEBHOOK_FIELDS = 200


def public_base_url(request: Request, settings: Settings) -> str:
    """Where Twilio reaches this server: ``public_url``, else the base URL of the request at hand."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    return str(request.base_url).rstrip("/")


def public_request_url(request: Request, settings: Settings) -> str:
    """The URL Twilio requested (and signed): the public base, this request's path and its query."""
    if not settings.public_url:
        return str(request.url)
    url = settings.public_url.rstrip("/") + request.url.path
    return f"{url}?{request.url.query}" if request.url.query else url


class _Params(dict[str, list[str]]):
    """Form fields with every value kept: ``RequestValidator`` signs repeated fields by ``getlist``."""

    def getlist(self, name: str) -> list[str]:
        return self[name]


def validate(
    request_url: str, params: Iterable[tuple[str, str]], signature: str | None, auth_token: str
) -> bool:
    """Whether ``signature`` is Twilio's for this URL and these POST parameters."""
    if not signature or not auth_token:
        return False
    fields = _Params()
    for name, value in params:
        fields.setdefault(name, []).append(value)
    return bool(RequestValidator(auth_token).validate(request_url, fields, signature))


@dataclass(frozen=True, slots=True)
class TwilioWebhook:
    """A webhook whose signature checked out."""

    url: str
    fields: list[tuple[str, str]]

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of a form field (Twilio sends each once)."""
        return next((value for key, value in self.fields if key == name), default)


async def _form_fields(request: Request) -> list[tuple[str, str]]:
    """The urlencoded body, bounded in size and field count (Twilio posts nothing else to webhooks)."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "Twilio webhooks are form-encoded")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_WEBHOOK_BYTES:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "webhook body too large")
    try:
        fields = parse_qsl(
            body.decode("ascii"),  # URL-encoded: anything beyond ASCII arrives percent-encoded
            keep_blank_values=True,
            max_num_fields=MAX_WEBHOOK_FIELDS,
            encoding="utf-8",
            errors="strict",
        )
    except ValueError as exc:  # not URL-encoded, bad UTF-8, too many fields
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "malformed form body") from exc
    if any("\x00" in name or "\x00" in value for name, value in fields):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "NUL characters are not allowed")
    return fields


def twilio_webhook(
    settings_of: Callable[[Request], Settings],
) -> Callable[[Request], Awaitable[TwilioWebhook]]:
    """A FastAPI dependency that reads a webhook's form and refuses it unless Twilio signed it: 503 while
    Twilio is not configured (nothing can be checked), 403 for a missing or wrong signature."""

    async def verified(request: Request) -> TwilioWebhook:
        settings = settings_of(request)
        token = settings.twilio_auth_token
        if token is None or not token.get_secret_value():
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                "Twilio is not configured on this server (PARLEY_TWILIO_AUTH_TOKEN)",
            )
        signature = request.headers.get(SIGNATURE_HEADER)
        client = request.client.host if request.client else None
        if not signature:
            log.warning("refused an unsigned Twilio webhook", path=request.url.path, client=client)
            raise HTTPException(status.HTTP_403_FORBIDDEN, "missing X-Twilio-Signature")
        fields = await _form_fields(request)
        url = public_request_url(request, settings)
        if not validate(url, fields, signature, token.get_secret_value()):
            log.warning("refused a Twilio webhook with a wrong signature", url=url, client=client)
            raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid X-Twilio-Signature")
        return TwilioWebhook(url, fields)

    return verified
