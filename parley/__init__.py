"""Parley: an open-source, self-hostable platform for real-time voice AI agents.

The Python API: ``from parley import Agent, CallContext`` (see ``parley.agent_api``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Agent", "CallContext", "ToolResult", "__version__"]

if TYPE_CHECKING:
    from parley.agent_api import Agent, CallContext, ToolResult


def __getattr__(name: str) -> Any:
    """The API is imported on first use, so ``import parley.x`` stays as light as that module."""
    if name in ("Agent", "CallContext", "ToolResult"):
        from parley import agent_api

        return getattr(agent_api, name)
    raise AttributeError(f"module 'parley' has no attribute {name!r}")
