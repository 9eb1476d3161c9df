"""Signed, expiring links: pages and actions reached from an email, by people who have no account.

A link names what it is for (its purpose), the ids it acts on and when it expires (Unix seconds); its
signature is HMAC-SHA256 over exactly those, keyed with ``PARLEY_LINK_SECRET`` (default: a key derived
from the server's secrets key, so every process sharing that key accepts the others' links). Nothing is
stored: a link works until it expires, and changing the secret revokes every link at once. Signatures
are compared in constant time, so timing tells an attacker nothing about how close a guess came.

Two kinds exist: a lead's call-back link in a new-lead email (``callback_link``: a business asks the
agent to call that lead back) and a business's leads page (``business_path``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from urllib.parse import urlencode

from parley.config import Settings
from parley.platform.secrets import secrets_key
from parley.store.models import Business, Lead

CALLBACK_TTL = timedelta(days=7)
"""How long a call-back link in a new-lead email works."""
BUSINESS_PAGE_TTL = timedelta(days=7)
"""How long a business's leads page link works unless asked otherwise."""
MAX_TTL = timedelta(days=90)
CALLBACK = "lead-callback"
BUSINESS_PAGE = "business-leads"
_DERIVE = b"parley signed links v1"
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_EXPIRES = re.compile(r"^[0-9]{1,12}$")
_SIGNATURE = re.compile(r"^[A-Za-z0-9_-]{43}$")


class LinkRefused(Exception):
    """A link that may not be used: altered, for something else, or expired (the message says which)."""


class LinkExpired(LinkRefused):
    pass


_KEYS: dict[tuple[str, str, str], bytes] = {}
"""Derived keys by where they come from: the secrets key file is read once per process."""


def _key(settings: Settings) -> bytes:
    own = settings.link_secret.get_secret_value() if settings.link_secret is not None else ""
    shared = settings.secrets_key.get_secret_value() if settings.secrets_key is not None else ""
    where = (own, shared, "" if own or shared else str(settings.data_dir))
    key = _KEYS.get(where)
    if key is None:
        raw = own.encode() if own else secrets_key(settings)
        key = _KEYS[where] = hmac.new(raw, _DERIVE, hashlib.sha256).digest()
    return key


def _signature(key: bytes, purpose: str, parts: Sequence[str], expires: int) -> str:
    message = "\n".join([purpose, *parts, str(expires)]).encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _checked_parts(parts: Sequence[str]) -> None:
    for part in parts:
        if not _ID.match(part):
            raise LinkRefused("this link names something that cannot exist")


def sign(
    settings: Settings, purpose: str, parts: Sequence[str], *, ttl: timedelta, now: float | None = None
) -> tuple[int, str]:
    """When a link for ``purpose`` on ``parts`` (ids) expires, and its signature."""
    _checked_parts(parts)
    if not timedelta(0) < ttl <= MAX_TTL:
        raise ValueError(f"a link lives between a second and {MAX_TTL.days} days")
    expires = int((time.time() if now is None else now) + ttl.total_seconds())
    return expires, _signature(_key(settings), purpose, parts, expires)


def verify(
    settings: Settings,
    purpose: str,
    parts: Sequence[str],
    expires: str,
    signature: str,
    *,
    now: float | None = None,
) -> None:
    """Raise ``LinkRefused`` unless ``signature`` was made by ``sign`` for exactly these values, and
    ``LinkExpired`` once the link's time is up (checked after the signature: an altered expiry is refused
    as altered)."""
    _checked_parts(parts)
    if not _EXPIRES.match(expires) or not _SIGNATURE.match(signature):
        raise LinkRefused("this link is incomplete or damaged; open it again from the email")
    expected = _signature(_key(settings), purpose, parts, int(expires))
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise LinkRefused("this link is not valid; open it again from the email")
    if int(expires) <= (time.time() if now is None else now):
        raise LinkExpired("this link has expired; ask for a new one")


# --- the two kinds of link ------------------------------------------------------------------------------


def callback_query(settings: Settings, lead_id: str, business_id: str, *, now: float | None = None) -> str:
    """``b=…&exp=…&sig=…``: what the call-back page of a lead needs to act for a business."""
    expires, sig = sign(settings, CALLBACK, [lead_id, business_id], ttl=CALLBACK_TTL, now=now)
    return urlencode({"b": business_id, "exp": str(expires), "sig": sig})


def verify_callback(
    settings: Settings, lead_id: str, business_id: str, expires: str, sig: str, *, now: float | None = None
) -> None:
    verify(settings, CALLBACK, [lead_id, business_id], expires, sig, now=now)


def callback_link(
    settings: Settings, lead_id: str, business_id: str, *, now: float | None = None
) -> str | None:
    """The absolute "request an AI call-back" link of a new-lead email, valid ``CALLBACK_TTL``; None when
    ``PARLEY_PUBLIC_URL`` is unset (an email cannot carry a link to a server whose address is unknown)."""
    if not settings.public_url:
        return None
    base = settings.public_url.rstrip("/")
    return f"{base}/leads/{lead_id}/callback?{callback_query(settings, lead_id, business_id, now=now)}"


def email_callback_url(settings: Settings) -> Callable[[Lead, Business], Awaitable[str | None]]:
    """What the notification worker asks for each new-lead email's call-back link: none where no call
    could follow (the lead did not consent, the business has no agent, no ``PARLEY_PUBLIC_URL``)."""

    async def url(lead: Lead, business: Business) -> str | None:
        if not lead.consent_to_call or business.agent_id is None:
            return None
        return callback_link(settings, lead.id, business.id)

    return url


def business_token(
    settings: Settings, business_id: str, *, ttl: timedelta = BUSINESS_PAGE_TTL, now: float | None = None
) -> str:
    """``<expires>.<signature>``: the ``token`` of a business's leads page."""
    expires, sig = sign(settings, BUSINESS_PAGE, [business_id], ttl=ttl, now=now)
    return f"{expires}.{sig}"


def verify_business(settings: Settings, business_id: str, token: str, *, now: float | None = None) -> int:
    """Check a leads page token; returns when it expires (Unix seconds)."""
    expires, _, sig = token.partition(".")
    verify(settings, BUSINESS_PAGE, [business_id], expires, sig, now=now)
    return int(expires)


def business_path(
    settings: Settings, business_id: str, *, ttl: timedelta = BUSINESS_PAGE_TTL, now: float | None = None
) -> str:
    """``/business/{id}/leads?token=…``: the business's own leads page (prefix the server's address)."""
    token = business_token(settings, business_id, ttl=ttl, now=now)
    return f"/business/{business_id}/leads?{urlencode({'token': token})}"
