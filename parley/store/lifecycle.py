"""The call status lifecycle.

    queued → ringing → in_progress → completed | failed | no_answer | busy | canceled

Status updates arrive from many places (the session's timeline, telephony callbacks, recovery), late and
more than once. A repeated update is a no-op, an update that is behind the call's progress is ignored as
stale, and only an update that would rewrite history differently (``completed`` then ``failed``) or skip
the lifecycle in an impossible way is an error.
"""

from __future__ import annotations

from enum import StrEnum


class CallStatus(StrEnum):
    QUEUED = "queued"
    RINGING = "ringing"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset(
    {CallStatus.COMPLETED, CallStatus.FAILED, CallStatus.NO_ANSWER, CallStatus.BUSY, CallStatus.CANCELED}
)
ACTIVE = frozenset({CallStatus.RINGING, CallStatus.IN_PROGRESS})

ALLOWED: dict[CallStatus, frozenset[CallStatus]] = {
    CallStatus.QUEUED: frozenset(
        {
            CallStatus.RINGING,
            CallStatus.IN_PROGRESS,
            CallStatus.FAILED,
            CallStatus.NO_ANSWER,
            CallStatus.BUSY,
            CallStatus.CANCELED,
        }
    ),
    CallStatus.RINGING: frozenset(
        {
            CallStatus.IN_PROGRESS,
            CallStatus.FAILED,
            CallStatus.NO_ANSWER,
            CallStatus.BUSY,
            CallStatus.CANCELED,
        }
    ),
    CallStatus.IN_PROGRESS: frozenset({CallStatus.COMPLETED, CallStatus.FAILED}),
}

_RANK = {CallStatus.QUEUED: 0, CallStatus.RINGING: 1, CallStatus.IN_PROGRESS: 2}


class Decision(StrEnum):
    APPLY = "applied"
    DUPLICATE = "duplicate"
    STALE = "stale"


class InvalidStatusTransition(ValueError):
    def __init__(self, current: CallStatus, new: CallStatus) -> None:
        super().__init__(f"a call cannot go from {current} to {new}")
        self.current = current
        self.new = new


def decide(current: CallStatus | str, new: CallStatus | str) -> Decision:
    """What to do with a status update; raises ``InvalidStatusTransition`` for impossible ones."""
    current, new = CallStatus(current), CallStatus(new)
    if new is current:
        return Decision.DUPLICATE
    if new in ALLOWED.get(current, frozenset()):
        return Decision.APPLY
    if not new.terminal and (current.terminal or _RANK[new] < _RANK[current]):
        return Decision.STALE  # e.g. a "ringing" callback that arrives after the call was answered or ended
    raise InvalidStatusTransition(current, new)
