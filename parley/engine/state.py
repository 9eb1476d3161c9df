"""The session's turn state: who holds the floor, in one enum, with every legal move in one table.

``TurnState`` is what the engine decides on (is this speech a turn, a barge-in, or talked over?).
``SessionState`` is its coarse public face (the ``state.changed`` event, the wire's ``state`` message,
the page's "Listening / Thinking / Speaking"); it is derived from the turn state, never set on its own.
"""

from __future__ import annotations

from enum import StrEnum


class SessionState(StrEnum):
    """What clients are told; several turn states look the same from outside."""

    IDLE = "idle"
    LISTENING = "listening"
    PROCESSING = "processing"
    SPEAKING = "speaking"
    ENDED = "ended"


class TurnState(StrEnum):
    IDLE = "idle"
    """Not started."""
    LISTENING = "listening"
    """The floor is open: nobody speaks, no turn is being judged, no reply is live."""
    USER_SPEAKING = "user_speaking"
    """The caller's turn is being heard (its audio goes to the recogniser)."""
    USER_PAUSED = "user_paused"
    """The caller paused: the turn is judged and its reply prepared unheard, until the pause is long
    enough to commit it or the caller carries on."""
    THINKING = "thinking"
    """A committed reply prepares its first audio."""
    SPEAKING = "speaking"
    """The committed reply's audio is playing."""
    INTERRUPTED = "interrupted"
    """The caller speaks over the agent: the reply is held (paused) until real words confirm the
    barge-in or the speech turns out to be noise or a backchannel and the reply resumes."""
    TALKED_OVER = "talked_over"
    """The agent has finished, but speech it talked over (interruptions off, or an announcement made
    while the caller spoke) is still under way; it belongs to no turn and is not answered."""
    ENDED = "ended"

    @property
    def public(self) -> SessionState:
        return _PUBLIC[self]

    @property
    def agent_holds_floor(self) -> bool:
        """A committed reply is live and not held: speech starting now interrupts it or is talked over."""
        return self in (TurnState.THINKING, TurnState.SPEAKING)

    @property
    def hears_turn(self) -> bool:
        """Speech audio now belongs to the caller's turn (otherwise it is talked over, or silence)."""
        return self in (TurnState.USER_SPEAKING, TurnState.INTERRUPTED)


_PUBLIC: dict[TurnState, SessionState] = {
    TurnState.IDLE: SessionState.IDLE,
    TurnState.LISTENING: SessionState.LISTENING,
    TurnState.USER_SPEAKING: SessionState.LISTENING,
    TurnState.USER_PAUSED: SessionState.LISTENING,
    TurnState.THINKING: SessionState.PROCESSING,
    TurnState.SPEAKING: SessionState.SPEAKING,
    TurnState.INTERRUPTED: SessionState.LISTENING,
    TurnState.TALKED_OVER: SessionState.LISTENING,
    TurnState.ENDED: SessionState.ENDED,
}

_T = TurnState
TURN_TRANSITIONS: dict[TurnState, frozenset[TurnState]] = {
    # A reply can be committed from anywhere (a first message, an announcement, typed or keypad input),
    # and the session can end from anywhere: both are in every row but ENDED's.
    _T.IDLE: frozenset({_T.LISTENING, _T.THINKING, _T.ENDED}),
    _T.LISTENING: frozenset({_T.USER_SPEAKING, _T.THINKING, _T.ENDED}),
    _T.USER_SPEAKING: frozenset({_T.USER_PAUSED, _T.THINKING, _T.ENDED}),
    _T.USER_PAUSED: frozenset({_T.USER_SPEAKING, _T.LISTENING, _T.THINKING, _T.ENDED}),
    _T.THINKING: frozenset({_T.SPEAKING, _T.INTERRUPTED, _T.LISTENING, _T.TALKED_OVER, _T.ENDED}),
    _T.SPEAKING: frozenset({_T.THINKING, _T.INTERRUPTED, _T.LISTENING, _T.TALKED_OVER, _T.ENDED}),
    _T.INTERRUPTED: frozenset(
        {_T.USER_SPEAKING, _T.USER_PAUSED, _T.LISTENING, _T.THINKING, _T.SPEAKING, _T.ENDED}
    ),
    _T.TALKED_OVER: frozenset({_T.LISTENING, _T.THINKING, _T.ENDED}),
    _T.ENDED: frozenset(),
}


class InvalidTransition(RuntimeError):
    """A move the table does not allow: a bug in the session, never a caller's doing."""
