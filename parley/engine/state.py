"""The session's states and the transitions it allows."""

from __future__ import annotations

from enum import StrEnum


class SessionState(StrEnum):
    IDLE = "idle"
    LISTENING = "listening"
    PROCESSING = "processing"
    SPEAKING = "speaking"
    ENDED = "ended"


ALLOWED_TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    SessionState.IDLE: frozenset({SessionState.LISTENING, SessionState.PROCESSING, SessionState.ENDED}),
    SessionState.LISTENING: frozenset({SessionState.PROCESSING, SessionState.SPEAKING, SessionState.ENDED}),
    SessionState.PROCESSING: frozenset({SessionState.LISTENING, SessionState.SPEAKING, SessionState.ENDED}),
    SessionState.SPEAKING: frozenset({SessionState.LISTENING, SessionState.PROCESSING, SessionState.ENDED}),
    SessionState.ENDED: frozenset(),
}


class InvalidTransition(RuntimeError):
    pass
