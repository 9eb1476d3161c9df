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
import re
import socket
import ssl
import unicodedata
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

_EMBEDDING_V4 = (
    ipaddress.IPv6Network("::/96"),  # IPv4-compatible (deprecated)
    ipaddress.IPv6Network("::ffff:0:0/96"),  # IPv4-mapped
    ipaddress.IPv6Network("::ffff:0:0:0/96"),  # IPv4-translated (SIIT)
    ipaddress.IPv6Network("64:ff9b::/96"),  # NAT64, well-known prefix: a gateway dials the IPv4 inside
)
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")
"""Local-use NAT64 (RFC 8215): the operator's own translator, where the IPv4 inside may sit anywhere."""
_INET_ATON_PART = re.compile(r"0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*")


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
        _check_characters(url)
        try:  # the client must be able to send it: httpx parses it, IDNA-encodes and decodes its host
            client_host = httpx.URL(url).host
        except (httpx.InvalidURL, ValueError) as exc:  # idna.IDNAError is a ValueError
            raise UrlRefused(f"not a valid URL: {exc}") from exc
        schemes = ("https", "http") if self.allow_http else ("https",)
        if parts.scheme not in schemes:
            allowed = " or ".join(f"{s}://" for s in schemes)
            raise UrlRefused(f"the URL must start with {allowed}")
        if not parts.hostname:
            raise UrlRefused("the URL has no host")
        if parts.username is not None or parts.password is not None:
            raise UrlRefused("the URL may not carry credentials (use headers from secrets)")
        for host in dict.fromkeys((parts.hostname.lower(), client_host.lower())):  # both parsers' view
            if host in self.allow_private_hosts:
                continue
            literal = address_literal(host)
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


def _check_characters(url: str) -> None:
    """No control character or white space anywhere: ``urlsplit`` silently drops CR, LF and tab, so a
    URL it passed would fail in the HTTP client at every delivery instead of here."""
    for position, char in enumerate(url):
        if char.isspace() or unicodedata.category(char) == "Cc":
            raise UrlRefused(f"the URL holds a space or control character ({char!r} at position {position})")


def address_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host names by itself, or None for a name: standard forms, and the IPv4 shorthands
    the resolver reads as addresses (``127.1``, ``2130706433``, ``0x7f000001``, ``0177.0.0.1``)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return _inet_aton(host)


def _inet_aton(host: str) -> ipaddress.IPv4Address | None:
    """``inet_aton``'s reading (what ``getaddrinfo`` dials): one to four dot-separated numbers, each
    decimal, octal (leading 0) or hex (0x); the last one fills the bytes that are left."""
    parts = host.removesuffix(".").split(".")
    if not 1 <= len(parts) <= 4 or not all(_INET_ATON_PART.fullmatch(part) for part in parts):
        return None
    numbers = [
        int(p, 16) if p[:2] in ("0x", "0X") else int(p, 8) if p.startswith("0") else int(p) for p in parts
    ]
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    value = 0
    for number in head:
        value = value << 8 | number
    return ipaddress.IPv4Address(value << 8 * (4 - len(head)) | last)


def public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Globally routable unicast: not private, loopback, link-local, shared, reserved or multicast. An
    IPv6 address carrying an IPv4 one (mapped, NAT64, 6to4) is judged by the IPv4 one, which a
    translator or relay would dial."""
    if isinstance(address, ipaddress.IPv6Address):
        if address in _LOCAL_NAT64:
            return False
        if address.sixtofour is not None:
            address = address.sixtofour
        elif any(address in network for network in _EMBEDDING_V4):
            address = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
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
