"""What a provider chain tells the call it serves: a failover, a circuit breaker that changed state.

Engines are shared by every session of an agent, so they cannot hold one session's timeline. A session
binds its own reporter instead (``bind_reporter``): the binding is a light view of the same shared
engine, and engines that have nothing to report are returned as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, Self, TypeVar, runtime_checkable

EventKind = Literal["failover", "breaker"]


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    """``failover``: data has ``role``, ``from``, ``to``, ``reason``. ``breaker``: ``role``, ``provider``,
    ``previous``, ``state`` (closed, open, half_open), ``failures``."""

    kind: EventKind
    data: dict[str, Any] = field(default_factory=dict)


Reporter = Callable[[ProviderEvent], None]


@runtime_checkable
class ReportsEvents(Protocol):
    def with_reporter(self, report: Reporter) -> Self:
        """The same engine (same providers, same breakers), reporting to ``report``."""
        ...


E = TypeVar("E")


def bind_reporter(engine: E, report: Reporter) -> E:
    """``engine`` reporting to ``report``, or ``engine`` itself when it has nothing to report."""
    if isinstance(engine, ReportsEvents):
        bound: E = engine.with_reporter(report)
        return bound
    return engine
