"""What Deepgram's speech-to-text and Aura adapters share: URLs, the auth header, and failures mapped to
the typed errors the failover layer acts on.

Both live sockets (``/v1/listen``, ``/v1/speak``) are spoken with ``websockets.asyncio.client`` rather
than through the official ``deepgram-sdk``: its asyncio sockets are built on websockets' deprecated legacy
client (a DeprecationWarning at import, and gone in a future websockets), the only way to swap their
transport is a process-wide patch of the SDK's modules, they take no open timeout (failover needs a
bounded connect), and a refused handshake loses Deepgram's ``dg-error`` reason. The Aura REST fallback,
a plain streamed POST, does go through the SDK (``parley.providers.tts.deepgram``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from parley.providers.errors import ProviderCallError, ProviderRejected, ProviderUnavailable
from parley.redaction import excerpt

PROVIDER = "deepgram"
DEFAULT_BASE_URL = "https://api.deepgram.com"
DETAIL_CHARS = 300
"""How much of a reason Deepgram gave is kept in an error message."""

AUTH_STATUSES = frozenset({401, 403})
RETRY_STATUSES = frozenset({408, 429})
DATA_CLOSE_CODES = frozenset({1002, 1003, 1007, 1008})
"""Close codes that blame what was sent (DATA-0000: not decodable as the declared audio): another
connection, or another provider given the same audio, would fail the same way."""

Params = Sequence[tuple[str, str]]


def http_base(base_url: str) -> str:
    """The REST base (``https://…``) whatever scheme the operator wrote."""
    parts = urlsplit(base_url.rstrip("/"))
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path, "", ""))


def ws_url(base_url: str, path: str, params: Params) -> str:
    """``wss://host/v1/listen?…`` from the operator's base URL (``https`` becomes ``wss``)."""
    parts = urlsplit(http_base(base_url))
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, parts.path + path, urlencode(list(params)), ""))


def auth_header(api_key: str) -> dict[str, str]:
    """Deepgram's API-key scheme: ``Authorization: Token <key>`` (a temporary token would be Bearer)."""
    return {"Authorization": f"Token {api_key}"}


def flag(value: bool) -> str:
    return "true" if value else "false"


def _detail(text: str, api_key: str) -> str:
    """What Deepgram said, on one line, without the key: redacted before it is cut, as a key cut first
    would no longer match and its first characters would be shown."""
    return excerpt(" ".join(text.split()), DETAIL_CHARS, [api_key])


def status_error(what: str, status: int, reason: str, api_key: str) -> ProviderCallError:
    """A refused request by its HTTP status: the key or the service (fail over) or the request itself."""
    detail = f": {_detail(reason, api_key)}" if reason.strip() else ""
    if status in AUTH_STATUSES:
        return ProviderUnavailable(
            f"Deepgram refused the API key for {what} (HTTP {status}{detail}); check the secret named by "
            "api_key_secret or PARLEY_DEEPGRAM_API_KEY",
            provider=PROVIDER,
            status=status,
        )
    if status in RETRY_STATUSES or status >= 500:
        return ProviderUnavailable(
            f"Deepgram could not serve {what} (HTTP {status}{detail})", provider=PROVIDER, status=status
        )
    return ProviderRejected(
        f"Deepgram rejected {what} (HTTP {status}{detail})", provider=PROVIDER, status=status
    )


async def open_socket(
    url: str, api_key: str, *, what: str, open_timeout: float, max_size: int | None = 2**20
) -> ClientConnection:
    """Open one socket, or raise the typed error: a refused handshake carries Deepgram's ``dg-error``."""
    try:
        return await connect(
            url,
            additional_headers=auth_header(api_key),
            open_timeout=open_timeout,
            close_timeout=2.0,
            max_size=max_size,
            user_agent_header="parley",
        )
    except InvalidStatus as exc:
        response = exc.response
        reason = response.headers.get("dg-error", "") or response.body.decode("utf-8", "replace")
        raise status_error(what, response.status_code, reason, api_key) from exc
    except InvalidURI as exc:  # the operator's base URL: not a network failure
        raise ProviderRejected(f"bad Deepgram URL for {what}: {exc}", provider=PROVIDER) from exc
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        raise ProviderUnavailable(
            f"Deepgram could not be reached for {what}: {exc!r}", provider=PROVIDER
        ) from exc


def close_error(what: str, exc: ConnectionClosed, api_key: str) -> ProviderCallError:
    """The typed failure for a socket Deepgram closed on us (its close frame names the reason)."""
    frame = exc.rcvd
    if frame is None:
        return ProviderUnavailable(
            f"Deepgram's {what} socket dropped without a close frame", provider=PROVIDER
        )
    reason = _detail(frame.reason, api_key)
    message = f"Deepgram closed the {what} socket ({frame.code} {reason})".rstrip()
    if frame.code in DATA_CLOSE_CODES or reason.startswith("DATA-"):
        return ProviderRejected(message, provider=PROVIDER, status=frame.code)
    return ProviderUnavailable(message, provider=PROVIDER, status=frame.code)


def query(values: Mapping[str, str | int | bool | None]) -> list[tuple[str, str]]:
    """Query pairs with unset values left out and booleans spelled as Deepgram expects."""
    pairs: list[tuple[str, str]] = []
    for name, value in values.items():
        if value is None:
            continue
        pairs.append((name, flag(value) if isinstance(value, bool) else str(value)))
    return pairs
