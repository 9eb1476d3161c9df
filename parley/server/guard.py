"""Who may open a live connection: the browser Origin check and per-address caps.

A session needs a right to exist (a token, or a public agent: ``runtime.open_session``); these checks
come first and cost nothing, so one address cannot take every slot, and another site's page cannot
use a visitor's browser to open sessions here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from parley.server.registry import AdmissionError
from parley.transports.ws_protocol import ErrorCode


def origin_allowed(headers: Mapping[str, str], allowed: Sequence[str]) -> bool:
    """A request without ``Origin`` is not from a browser page (or is same-origin navigation) and passes;
    a browser's must be this server's own origin or one the operator allowed."""
    origin = headers.get("origin")
    if origin is None:
        return True
    if "*" in allowed or origin in allowed:
        return True
    parts = urlsplit(origin)
    host = headers.get("host")
    return bool(parts.scheme in ("http", "https") and host and parts.netloc.lower() == host.lower())


class ClientCaps:
    """Counts open connections and live sessions per client address against the configured caps."""

    def __init__(self, max_connections: int, max_sessions: int) -> None:
        self.max_connections = max_connections
        self.max_sessions = max_sessions
        self._connections: Counter[str] = Counter()
        self._sessions: Counter[str] = Counter()

    def take_connection(self, address: str) -> None:
        """Count one more open connection of ``address``, or raise ``AdmissionError``."""
        self._take(
            self._connections,
            address,
            self.max_connections,
            f"too many open connections from your address (limit {self.max_connections})",
        )

    def give_connection(self, address: str) -> None:
        self._release(self._connections, address)

    def take_session(self, address: str) -> None:
        self._take(
            self._sessions,
            address,
            self.max_sessions,
            f"too many live sessions from your address (limit {self.max_sessions}); end one first",
        )

    def give_session(self, address: str) -> None:
        self._release(self._sessions, address)

    def sessions(self, address: str) -> int:
        return self._sessions[address]

    @staticmethod
    def _take(counter: Counter[str], address: str, limit: int, refusal: str) -> None:
        if counter[address] >= limit:
            raise AdmissionError(ErrorCode.RATE_LIMITED, refusal)
        counter[address] += 1

    @staticmethod
    def _release(counter: Counter[str], address: str) -> None:
        counter[address] -= 1
        if counter[address] <= 0:
            del counter[address]
