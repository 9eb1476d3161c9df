"""Keypad digits (DTMF) gathered into entries, the same for every kind of session.

Each digit is on the timeline at once (the session's job); the model hears an entry: the digits a short
pause apart, or up to ``#``, as one user message ``[keypad] 1 2 3 #``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

KEYPAD_DIGITS = frozenset("0123456789*#ABCD")
KEYPAD_PAUSE_S = 2.0
"""A pause this long after a digit ends the entry."""


def check_digit(digit: str) -> None:
    """Raise ``ValueError`` unless ``digit`` is one keypad key (``0-9 * # A-D``)."""
    if digit not in KEYPAD_DIGITS or len(digit) != 1:
        raise ValueError(f"not a keypad digit: {digit!r}")


class KeypadEntry:
    """Collects digits until ``#`` or a pause, then hands the entry's text to ``enter``.

    ``spawn`` starts the pause timer as one of the session's own tasks, so the session's shutdown
    cancels it with the rest.
    """

    def __init__(
        self,
        enter: Callable[[str], None],
        spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[Any]],
    ) -> None:
        self._enter = enter
        self._spawn = spawn
        self._digits: list[str] = []
        self._timer: asyncio.Task[Any] | None = None

    def press(self, digit: str) -> None:
        self._digits.append(digit)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if digit == "#":
            self._flush()
        else:
            self._timer = self._spawn(self._after_pause())

    async def _after_pause(self) -> None:
        await asyncio.sleep(KEYPAD_PAUSE_S)
        self._timer = None
        self._flush()

    def _flush(self) -> None:
        digits, self._digits = self._digits, []
        if digits:
            self._enter("[keypad] " + " ".join(digits))
