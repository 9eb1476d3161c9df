"""What the OpenAI voice and the OpenAI transcription recogniser share: the SDK client, and its errors as
Parley's typed provider failures (so the failover chain can act on them)."""

from __future__ import annotations

import openai
from openai import AsyncOpenAI

from parley.providers.errors import ProviderCallError, ProviderRejected, ProviderUnavailable
from parley.redaction import excerpt

UNAVAILABLE_STATUSES = frozenset({401, 403, 404, 408, 409, 429})
"""Refusals that say this provider will not serve us now (key, permission, unknown model, rate or quota);
any 5xx too. Other 4xx (a bad request) are the request's own fault."""
BODY_EXCERPT = 300


def audio_client(base_url: str, api_key: str | None, timeout_s: float) -> AsyncOpenAI:
    """An SDK client without its own retries: a retry belongs to the failover layer, which knows whether
    anything was said yet."""
    return AsyncOpenAI(
        api_key=api_key or "none",  # an OpenAI-compatible server may want no key; the SDK wants one
        base_url=base_url,
        timeout=timeout_s,
        max_retries=0,
    )


def provider_error(exc: Exception, provider: str, what: str, api_key: str | None) -> ProviderCallError:
    """The SDK's error (or its HTTP client's, for a body cut off mid-stream) as ``ProviderUnavailable``
    (retry elsewhere) or ``ProviderRejected``. ``api_key`` (the one sent) is kept out of the message."""
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        detail = f"{what} failed (HTTP {status}): {_excerpt(exc, api_key)}"
        if status in UNAVAILABLE_STATUSES or status >= 500:
            return ProviderUnavailable(detail, provider=provider, status=status)
        return ProviderRejected(detail, provider=provider, status=status)
    # APIConnectionError (refused, reset, DNS), APITimeoutError, a response that is not what was asked
    return ProviderUnavailable(f"{what} failed: {exc!r}", provider=provider)


def _excerpt(exc: openai.APIStatusError, api_key: str | None) -> str:
    """The start of the server's error, redacted before it is cut: a key cut first would no longer match
    and its first characters would be shown."""
    secrets = [api_key] if api_key else []
    body = exc.body
    if isinstance(body, dict):  # the documented error object: {"error": {"message", "type", "code"}}
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else None
        if isinstance(message, str):
            return excerpt(message, BODY_EXCERPT, secrets)
    return excerpt(str(exc.message), BODY_EXCERPT, secrets)
