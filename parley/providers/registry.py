"""Providers by role and name: how an agent's ``provider: whisper`` becomes an engine.

Built-ins are registered by ``parley.builtin_providers`` (``parley.stack`` imports it). Others come from
the operator, never from an agent: a package's entry point in the group ``parley.providers`` (its object
a ``ProviderEntry``), or a call to ``register_provider`` in the operator's own code (the module
``parley serve --agent module:agent`` imports). An agent only ever picks one of the registered names,
with options its ``options`` model allows.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import BaseModel

from parley.providers.options import PROVIDER_OPTIONS, Role

if TYPE_CHECKING:
    from parley.config import Settings

log = structlog.get_logger("parley.providers.registry")

ENTRY_POINT_GROUP = "parley.providers"


@dataclass(frozen=True, slots=True)
class BuildRequest:
    """What a factory gets: the agent's options (validated, typed), the operator's settings and the
    secrets of the agent's organization that ``secret_names`` asked for."""

    options: Any
    host: Settings
    secrets: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class ProviderEntry:
    """One provider. ``factory`` builds the engine (for ``vad``: a zero-argument function making one
    detector per session); blocking is fine, it runs off the event loop."""

    role: Role
    name: str
    factory: Callable[[BuildRequest], Any]
    options: type[BaseModel]
    """The agent-settable options: an allow-list with bounds (tenant input)."""
    secret_names: Callable[[Any], Sequence[str]] = field(default=lambda _options: ())
    """Which organization secrets the options refer to; an engine built with them is not shared with
    another organization."""


class ProviderError(ValueError):
    """An agent names a provider Parley does not have, or one that cannot start here."""


_entries: dict[tuple[str, str], ProviderEntry] = {}
_plugins_loaded = False
_lock = threading.Lock()


def register_provider(entry: ProviderEntry) -> None:
    """Offer ``entry`` to agents under its name (a later registration of the same name replaces it)."""
    _entries[(entry.role, entry.name)] = entry
    PROVIDER_OPTIONS[entry.role][entry.name] = entry.options  # type: ignore[assignment]


def provider(role: Role, name: str) -> ProviderEntry:
    load_plugins()
    found = _entries.get((role, name))
    if found is None:
        raise ProviderError(f"unknown {role} provider '{name}' (choose {', '.join(provider_names(role))})")
    return found


def provider_names(role: Role) -> list[str]:
    load_plugins()
    return sorted(name for (r, name) in _entries if r == role)


def load_plugins() -> None:
    """Register the providers installed packages offer (once per process). A broken plugin is logged and
    left out; it never takes the built-ins down with it."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    with _lock:
        if _plugins_loaded:
            return
        for point in entry_points(group=ENTRY_POINT_GROUP):
            try:
                loaded = point.load()
                entry = loaded() if callable(loaded) and not isinstance(loaded, ProviderEntry) else loaded
                if not isinstance(entry, ProviderEntry):
                    raise TypeError(f"{point.value} is not a ProviderEntry")
                register_provider(entry)
            except Exception as exc:
                log.error(
                    "provider_plugin_failed", entry_point=point.name, value=point.value, error=repr(exc)
                )
        _plugins_loaded = True
