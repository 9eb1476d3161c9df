"""Typed failures of a provider while it serves a call, so the failover layer can act on them.

These are runtime failures; an agent naming a provider Parley does not have is a configuration error,
``parley.providers.registry.ProviderError`` (a ``ValueError``), and is not one of these.
"""

from __future__ import annotations

from parley.redaction import without_secrets


class ProviderCallError(RuntimeError):
    """A provider failed to serve one request."""

    def __init__(self, message: str, *, provider: str = "", status: int | None = None) -> None:
        # A provider's answer may quote the credentials it was sent: never carried further.
        super().__init__(without_secrets(message))
        self.provider = provider
        self.status = status


class ProviderUnavailable(ProviderCallError):
    """A provider could not be reached or refused to serve (retry elsewhere).

    Connection refused or reset, a timeout (including no first token in time), a 5xx or 429, an
    authentication failure: another provider may well answer the same request.
    """


class ProviderRejected(ProviderCallError):
    """A provider refused the request itself (a 4xx other than auth/rate limits): another provider
    given the same request would most likely refuse it too, so it is not failed over."""
