"""Tenant-given URLs are reached only where the operator allows (SSRF guard).

A tenant names the URL of a webhook tool or endpoint, and the request leaves from inside the operator's
network: without a guard it could read cloud metadata (169.254.169.254), an admin port on localhost or
any private service. The rules: ``https`` only (``http`` when the operator allows it), no credentials in
the URL, and every address the host resolves to must be public, unless the operator lists the host (or
the address) in ``webhook_allow_private_hosts``.

The address check runs when the connection is made, on the addresses actually dialed (a network backend
under httpx), so a name that resolves to a public address when checked and to a private one when
connecting (DNS rebinding) gains nothing. Redirects are not followed and proxies from the environment
are ignored: both would send the request somewhere that was not checked.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import certifi
import httpcore
import httpx
from httpcore import AsyncNetworkBackend, AsyncNetworkStream

from parley.config import Settings

MAX_URL_LENGTH = 2000


class UrlRefused(ValueError):
    """A URL (or the address it resolves to) that tenants may not send requests to."""


@dataclass(frozen=True, slots=True)
class UrlPolicy:
    allow_http: bool = False
    allow_private_hosts: frozenset[str] = frozenset()
    """Lower-case host names or IP addresses exempt from the private-address rule."""

    @classmethod
    def from_settings(cls, settings: Settings) -> UrlPolicy:
        return cls(
            allow_http=settings.webhook_allow_http,
            allow_private_hosts=frozenset(h.strip().lower() for h in settings.webhook_allow_private_hosts),
        )

    def check_url(self, url: str) -> str:
        """The URL if its form is allowed (the addresses are checked when connecting)."""
        if len(url) > MAX_URL_LENGTH:
            raise UrlRefused(f"the URL is longer than {MAX_URL_LENGTH} characters")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018  (raises for a port that is not a number)
        except ValueError as exc:
            raise UrlRefused(f"not a valid URL: {exc}") from exc
        schemes = ("https", "http") if self.allow_http else ("https",)
        if parts.scheme not in schemes:
            allowed = " or ".join(f"{s}://" for s in schemes)
            raise UrlRefused(f"the URL must start with {allowed}")
        if not parts.hostname:
            raise UrlRefused("the URL has no host")
        if parts.username is not None or parts.password is not None:
            raise UrlRefused("the URL may not carry credentials (use headers from secrets)")
        host = parts.hostname.lower()
        if host not in self.allow_private_hosts:
            try:
                literal = ipaddress.ip_address(host)
            except ValueError:
                literal = None
            if literal is not None and not public(literal):
                raise UrlRefused(f"{host} is not a public address")
        return url

    def check_addresses(self, host: str, addresses: Iterable[str]) -> list[str]:
        """The addresses to dial for ``host``: all of them, once every one is allowed."""
        found = list(dict.fromkeys(addresses))
        if not found:
            raise UrlRefused(f"{host} does not resolve")
        if host.lower() in self.allow_private_hosts:
            return found
        for address in found:
            if address.lower() not in self.allow_private_hosts and not public(ipaddress.ip_address(address)):
                raise UrlRefused(f"{host} resolves to {address}, which is not a public address")
        return found


def public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Globally routable unicast: not private, loopback, link-local, shared, reserved or multicast."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


class GuardedBackend(AsyncNetworkBackend):
    """httpcore's network backend, dialing only addresses the policy allows."""

    def __init__(self, policy: UrlPolicy) -> None:
        self.policy = policy
        self._inner = httpcore.AnyIOBackend()  # public; what httpcore picks itself under asyncio

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109  (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"{host} does not resolve: {exc}") from exc
        try:
            addresses = self.policy.check_addresses(host, [str(info[4][0]) for info in infos])
        except UrlRefused as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109  (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks do not use unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over ``GuardedBackend``: no proxies, certificates from certifi."""

    def __init__(self, policy: UrlPolicy) -> None:
        super().__init__(trust_env=False)
        # httpx builds its pool in __init__ without a way to pass a network backend: replace it.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl.create_default_context(cafile=certifi.where()),
            max_connections=20,
            keepalive_expiry=5.0,
            network_backend=GuardedBackend(policy),
        )


def guarded_client(policy: UrlPolicy, timeout_s: float) -> httpx.AsyncClient:
    """An HTTP client for tenant URLs: guarded, no redirects, no environment proxies or netrc."""
    return httpx.AsyncClient(
        transport=GuardedTransport(policy),
        timeout=httpx.Timeout(timeout_s),
        follow_redirects=False,
        trust_env=False,
    )


def refusal(exc: httpx.HTTPError) -> str:
    """Words for a failed request (the guard's refusal included), with no URL secrets in them."""
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        return f"could not connect ({exc})"
    return f"{type(exc).__name__}: {exc}"
