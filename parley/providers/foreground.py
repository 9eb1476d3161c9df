"""Which local inference goes first when models share a few cores.

On 2 cores two inferences at once each run at about half speed: a reply's first clause took Piper 90 ms
alone and 200 ms while the language model went on writing the rest of the reply. Work whose delay a caller
hears (speech being synthesized, a final transcript) holds the foreground; work that is ahead of the
caller anyway (a reply's next tokens, a read-ahead) gives way between its steps while it is held.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

GIVE_WAY_S = 0.3
"""The longest one step of waiting work waits: it must not starve behind a busy voice (several calls)."""


class Foreground:
    """Held by any number of threads at once; ``give_way`` blocks until none holds it."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._holders = 0

    @property
    def held(self) -> bool:
        return self._holders > 0

    @contextmanager
    def hold(self) -> Iterator[None]:
        with self._changed:
            self._holders += 1
        try:
            yield
        finally:
            with self._changed:
                self._holders -= 1
                if self._holders == 0:
                    self._changed.notify_all()

    def give_way(self, limit_s: float = GIVE_WAY_S) -> None:
        """Wait while the foreground is held, at most ``limit_s``."""
        with self._changed:
            self._changed.wait_for(lambda: self._holders == 0, timeout=limit_s)


FOREGROUND = Foreground()
"""The process's one foreground: the models in a process share its cores."""


def in_foreground(call: Callable[[], T]) -> Callable[[], T]:
    """``call``, run holding the foreground."""

    def held() -> T:
        with FOREGROUND.hold():
            return call()

    return held
