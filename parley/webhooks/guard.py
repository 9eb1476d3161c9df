"""Tenant-given URLs are reached only where the operator allows (SSRF guard).

A tenant names the URL of a webhook tool or endpoint, and the request leaves from inside the operator's
network: without a guard it could read cloud metadata (169.254.169.254), an admin port on localhost or
any private service. The rules: ``https`` only (``http`` when the operator allows it), no credentials in
the URL, port 443 or 80 (or one the operator adds in ``webhook_allow_ports``), and every address the host
resolves to must be public, unless the operator lists the host (or the address) in
``webhook_allow_private_hosts`` (such a host is the operator's own service: any port).

What a tenant reads of a refusal or a failed connection tells it nothing about the operator's network:
never an address the operator's resolver answered (a name like ``metadata.google.internal`` would map the
inside), the same words for a name that does not resolve and one that resolves to a private address, and
the same "could not connect" for a port that refuses and one that drops packets. The operator's log keeps
the detail.

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
import structlog
from httpcore import AsyncNetworkBackend, AsyncNetworkStream

from parley.config import Settings

log = structlog.get_logger("parley.webhooks.guard")

MAX_URL_LENGTH = 2000
DEFAULT_PORTS = frozenset({443, 80})
"""The ports of the web: anything else (SSH, databases, admin consoles) only when the operator adds it."""
_SCHEME_PORTS = {"https": 443, "http": 80}
NOT_PERMITTED = "the host does not resolve to a permitted address"
"""A tenant's words for a host refused when dialed: whether it resolved, and to what, is the operator's."""

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
    """A URL (or the address it resolves to) that tenants may not send requests to. The message is for
    the tenant; ``detail`` (what the resolver answered) is for the operator's log only."""

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail if detail is not None else message


class DestinationRefused(httpcore.ConnectError):
    """The guard's refusal at dial time, told apart from a connection that failed (``refusal``)."""


@dataclass(frozen=True, slots=True)
class UrlPolicy:
    allow_http: bool = False
    allow_private_hosts: frozenset[str] = frozenset()
    """Lower-case host names or IP addresses exempt from the private-address and port rules."""
    allowed_ports: frozenset[int] = DEFAULT_PORTS

    @classmethod
    def from_settings(cls, settings: Settings) -> UrlPolicy:
        return cls(
            allow_http=settings.webhook_allow_http,
            allow_private_hosts=frozenset(h.strip().lower() for h in settings.webhook_allow_private_hosts),
            allowed_ports=DEFAULT_PORTS | frozenset(settings.webhook_allow_ports),
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
            client_url = httpx.URL(url)
            client_host = client_url.host
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
        hosts = tuple(dict.fromkeys((parts.hostname.lower(), client_host.lower())))  # both parsers' view
        for host in hosts:
            if host in self.allow_private_hosts:
                continue
            literal = address_literal(host)
            if literal is not None and not public(literal):
                raise UrlRefused(f"{host} is not a public address")
        for port in dict.fromkeys((parts.port, client_url.port)):
            for host in hosts:
                self.check_port(host, _SCHEME_PORTS[parts.scheme] if port is None else port)
        return url

    def check_url_port(self, url: str) -> None:
        """Only the port rule (and that the port is a number, and the URL holds no space, control or
        invisible character, which no policy allows): what a webhook tool's URL is held to when its agent
        is saved; the other rules are checked at every call, under the policy of the day."""
        _check_characters(url)
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise UrlRefused(f"not a valid URL: {exc}") from exc
        default = _SCHEME_PORTS.get(parts.scheme, 443)
        self.check_port((parts.hostname or "").lower(), default if port is None else port)

    def check_port(self, host: str, port: int) -> None:
        """Raise ``UrlRefused`` for a port tenants may not reach on ``host``: a tenant's URL must not
        probe SSH, databases or admin consoles from the operator's address. A host the operator lists in
        ``allow_private_hosts`` is its own service, on whatever port it listens."""
        if port in self.allowed_ports or host.lower() in self.allow_private_hosts:
            return
        permitted = ", ".join(str(p) for p in sorted(self.allowed_ports))
        raise UrlRefused(f"port {port} is not permitted (permitted ports: {permitted})")

    def check_addresses(self, host: str, addresses: Iterable[str]) -> list[str]:
        """The addresses to dial for ``host``: all of them, once every one is allowed. The message of a
        refusal names no address (``NOT_PERMITTED``); ``detail`` does, for the operator's log."""
        found = list(dict.fromkeys(addresses))
        if not found:
            raise UrlRefused(NOT_PERMITTED, f"{host} resolves to no address")
        if host.lower() in self.allow_private_hosts:
            return found
        for address in found:
            if address.lower() not in self.allow_private_hosts and not public(ipaddress.ip_address(address)):
                raise UrlRefused(
                    NOT_PERMITTED, f"{host} resolves to {address}, which is not a public address"
                )
        return found


_UNSEEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
"""Control characters, and format ones (bidi overrides and isolates, zero-width spaces and joiners,
soft hyphen): the latter show as nothing, or reorder the text around them."""


def _check_characters(url: str) -> None:
    """No control character, white space or invisible format character anywhere: ``urlsplit`` silently
    drops CR, LF and tab, so a URL it passed would fail in the HTTP client at every delivery instead of
    here; and a bidi override (U+202E) or a zero-width space makes the URL read, in a listing or the CLI,
    as one it is not."""
    for position, char in enumerate(url):
        if char.isspace() or unicodedata.category(char) in _UNSEEN_CATEGORIES:
            raise UrlRefused(
                "the URL holds a space, a control character or an invisible format character "
                f"(U+{ord(char):04X} at position {position})"
            )


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
        deadline = None if timeout is None else loop.time() + timeout  # resolving and every address
        try:
            self.policy.check_port(host, port)  # the URL's check ran before; this is what is dialed
            async with asyncio.timeout_at(deadline):
                resolved = await _resolve(host, port)
            addresses = self.policy.check_addresses(host, resolved)
        except UrlRefused as exc:
            log.warning("webhook destination refused", host=host, port=port, reason=exc.detail)
            raise DestinationRefused(str(exc)) from exc  # its message: the tenant's words, no address
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} took too long") from exc
        error: Exception = httpcore.ConnectTimeout("no time was left to connect")
        for address in addresses:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                break
            try:
                return await self._inner.connect_tcp(address, port, left, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
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


async def _resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to; a name that does not resolve is refused in the same words as
    one that resolves to a private address, so a tenant cannot tell which internal names exist."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UrlRefused(NOT_PERMITTED, f"{host} does not resolve: {exc}") from exc
    return [str(info[4][0]) for info in infos]


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


def guarded_client(
    policy: UrlPolicy, timeout_s: float, connect_timeout_s: float | None = None
) -> httpx.AsyncClient:
    """An HTTP client for tenant URLs: guarded, no redirects, no environment proxies or netrc.
    ``connect_timeout_s`` (default ``timeout_s``) bounds resolving and connecting, all addresses together."""
    return httpx.AsyncClient(
        transport=GuardedTransport(policy),
        timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s or timeout_s),
        follow_redirects=False,
        trust_env=False,
    )


def refusal(exc: httpx.HTTPError) -> str:
    """Words for a failed request (the guard's refusal included), with no URL secrets in them. Every
    failure to connect reads alike: a refused port and a filtered one (a timeout) must not tell a tenant
    scanning from the operator's address which is which. A refused TLS certificate is named: the port
    answered, and a tenant needs to know what to fix."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        causes = list(_causes(exc))
        refused = next((c for c in causes if isinstance(c, DestinationRefused)), None)
        if refused is not None:
            return f"could not connect: {refused}"
        certificate = next((c for c in causes if isinstance(c, ssl.SSLCertVerificationError)), None)
        if certificate is not None:
            return f"could not connect: the TLS certificate was not accepted ({certificate.verify_message})"
        if any(isinstance(c, ssl.SSLError) for c in causes):
            return "could not connect: the TLS handshake failed"
        return "could not connect"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"


def _causes(exc: BaseException) -> Iterable[BaseException]:
    """``exc`` and what raised it, down the chain (httpx's error wraps httpcore's, which wraps the OS's)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__
