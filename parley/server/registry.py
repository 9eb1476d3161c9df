"""Which live sessions this node runs, and whether it may take another.

The in-memory registry serves one node. A shared one (Redis: session id -> node, token, expiry) can
replace it behind the same small interface, so reconnects can be routed to the node holding the call.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol

from parley.transports.ws_protocol import ErrorCode

if TYPE_CHECKING:
    from parley.server.live import LiveSession


class AdmissionError(Exception):
    """A new session is refused; ``code`` and the message go to the client as they are."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class SessionRegistry(Protocol):
    accepting: bool

    def reserve(self) -> object:
        """Hold a slot for a session being set up, or raise ``AdmissionError``."""
        ...

    def release(self, reservation: object) -> None: ...

    def add(self, reservation: object, live: LiveSession) -> None: ...

    def remove(self, session_id: str) -> None: ...

    def get(self, session_id: str) -> LiveSession | None: ...

    def find(self, session_id: str, token: str) -> LiveSession | None:
        """The session, if ``token`` is its resume token."""
        ...

    def sessions(self) -> list[LiveSession]: ...

    def __len__(self) -> int: ...


class InMemoryRegistry:
    """Live sessions of this process; slots being set up (models loading) count against the limit."""

    def __init__(self, max_sessions: int) -> None:
        self.max_sessions = max_sessions
        self.accepting = True
        self._sessions: dict[str, LiveSession] = {}
        self._reserved: set[object] = set()

    def reserve(self) -> object:
        if not self.accepting:
            raise AdmissionError(
                ErrorCode.SHUTTING_DOWN, "the server is shutting down and takes no new sessions"
            )
        if len(self._sessions) + len(self._reserved) >= self.max_sessions:
            raise AdmissionError(
                ErrorCode.CAPACITY,
                f"the server is at its limit of {self.max_sessions} concurrent sessions; try again shortly",
            )
        reservation = object()
        self._reserved.add(reservation)
        return reservation

    def release(self, reservation: object) -> None:
        self._reserved.discard(reservation)

    def add(self, reservation: object, live: LiveSession) -> None:
        self._reserved.discard(reservation)
        self._sessions[live.id] = live

    def remove(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def get(self, session_id: str) -> LiveSession | None:
        return self._sessions.get(session_id)

    def find(self, session_id: str, token: str) -> LiveSession | None:
        live = self._sessions.get(session_id)
        if live is None or not secrets.compare_digest(live.token.encode(), token.encode()):
            return None
        return live

    def sessions(self) -> list[LiveSession]:
        return list(self._sessions.values())

    def __len__(self) -> int:
        return len(self._sessions)


@contextmanager
def slot(registry: SessionRegistry) -> Iterator[object]:
    """A reservation that is given back unless a session was added with it."""
    reservation = registry.reserve()
    try:
        yield reservation
    finally:
        registry.release(reservation)
