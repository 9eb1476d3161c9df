"""The signature on everything Parley sends to a tenant's URL.

``Parley-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``. The timestamp is inside
what is signed, so a receiver that refuses old timestamps also refuses replays; ``v1`` names the scheme
so a later one can be sent alongside during a key or algorithm change.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Parley-Signature"
DEFAULT_TOLERANCE_S = 300


class SignatureError(ValueError):
    """A signature header that is missing, malformed, stale, or does not match the body."""


def signature(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The header value for ``body`` (now, unless a timestamp is given)."""
    ts = int(time.time()) if timestamp is None else timestamp
    return f"t={ts},v1={signature(secret, ts, body)}"


def verify(
    secret: str,
    header: str | None,
    body: bytes,
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> int:
    """Check a header as a receiver should; returns its timestamp. Raises ``SignatureError``."""
    if not header:
        raise SignatureError(f"no {SIGNATURE_HEADER} header")
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if sep:
            fields.setdefault(name, []).append(value)
    try:
        ts = int(fields["t"][0])
    except (KeyError, ValueError) as exc:
        raise SignatureError("the signature has no valid timestamp") from exc
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        raise SignatureError("the signature's timestamp is outside the tolerance")
    expected = signature(secret, ts, body)
    if not any(hmac.compare_digest(expected, candidate) for candidate in fields.get("v1", [])):
        raise SignatureError("the signature does not match the body")
    return ts
