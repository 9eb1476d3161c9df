"""Agents offered for live sessions, and their loaded, warmed model stacks.

Models are loaded once and shared (``parley.stack`` caches them), and warmed once: a new agent, or a new
version of one (each edit is one), only primes what is its own, its prompt prefix and its greeting, so
its first caller does not wait for models that are already warm. The default agent is warmed at startup,
and the server reports ready when it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parley.engine.agent import AgentConfig, AgentConfigError, load_agent
from parley.engine.session import EngineStack

StackFactory = Callable[[AgentConfig], Awaitable[EngineStack]]
MAX_STACKS = 64
"""Prepared stacks kept for agents' next calls. Each edit of an agent is a new version with a stack of
its own (its primed prompt and greeting; the models are shared), and tenants edit at will: the least
recently used are dropped, and prepared again if called."""
BUILTIN_AGENTS = Path(__file__).resolve().parent.parent / "agents"


@dataclass(frozen=True, slots=True)
class AgentSummary:
    name: str
    description: str


class AgentCatalog:
    """Agents by name: the built-in YAML files plus those in ``extra_dir`` (which win on a name clash).

    The platform can pass its own catalog (agents from the database) with the same two methods.
    """

    def __init__(
        self,
        agents: list[AgentConfig] | None = None,
        extra_dir: Path | None = None,
        default: str | None = None,
        extra: Sequence[AgentConfig] = (),
    ) -> None:
        """``agents`` replaces the YAML files; ``extra`` adds to them (``parley serve --agent``)."""
        found: dict[str, AgentConfig] = {}
        if agents is None:
            for directory in (BUILTIN_AGENTS, extra_dir):
                for path in sorted(directory.glob("*.y*ml")) if directory and directory.is_dir() else []:
                    with contextlib.suppress(AgentConfigError):
                        agent = load_agent(path)
                        found[agent.name] = agent
        else:
            found = {a.name: a for a in agents}
        found.update({a.name: a for a in extra})
        if not found:
            found = {"assistant": AgentConfig()}
        self._agents = found
        self.default = default if default in found else next(iter(found))

    def get(self, name: str | None) -> AgentConfig | None:
        return self._agents.get(name or self.default)

    def agents(self) -> list[AgentConfig]:
        return list(self._agents.values())

    def summaries(self) -> list[AgentSummary]:
        return [AgentSummary(a.name, a.system_prompt.split(".")[0][:120]) for a in self._agents.values()]


class Engines:
    """Prepared stacks per agent; ``ready`` once the default agent's models are loaded and warm."""

    def __init__(self, catalog: AgentCatalog, factory: StackFactory | None = None) -> None:
        self._build: Callable[[AgentConfig, Mapping[str, str]], Awaitable[EngineStack]]
        if factory is None:
            self._build = self._prepare
        else:
            custom = factory  # test and benchmark engines need no secrets
            self._build = lambda agent, _secrets: custom(agent)
        self.catalog = catalog
        self._stacks: OrderedDict[str, asyncio.Task[EngineStack]] = OrderedDict()
        """Prepared stacks, least recently asked for first (at most ``MAX_STACKS`` kept)."""
        self._warm_models: dict[int, tuple[object, asyncio.Task[None]]] = {}
        """Each shared model's warm-up, by identity (the model is kept, so its id is never reused)."""
        self.ready = asyncio.Event()
        self.error: BaseException | None = None

    async def warm_up(self) -> None:
        """Prepare the default agent; a failure is kept so /readyz can say what went wrong."""
        agent = self.catalog.get(None)
        assert agent is not None
        try:
            await self.stack_for(agent)
        except Exception as exc:
            self.error = exc
            raise
        self.ready.set()

    async def stack_for(self, agent: AgentConfig, secrets: Mapping[str, str] | None = None) -> EngineStack:
        """The agent's prepared stack; ``secrets`` are the organization's values its options name."""
        found = dict(secrets or {})
        digest = hashlib.sha256(json.dumps(found, sort_keys=True).encode()).hexdigest()
        key = agent.model_dump_json() + digest
        task = self._stacks.get(key)
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = asyncio.ensure_future(self._build(agent, found))
            self._stacks[key] = task
        self._stacks.move_to_end(key)
        while len(self._stacks) > MAX_STACKS:  # calls under way keep theirs; only the cache forgets it
            self._stacks.popitem(last=False)
        return await asyncio.shield(task)

    async def _prepare(self, agent: AgentConfig, secrets: Mapping[str, str]) -> EngineStack:
        """``parley.stack.prepare_stack``, except that a model another agent's stack already warmed is
        not warmed again: models are shared, so only the agent's prompt prefix and greeting are new."""
        from parley.stack import prepare_stack

        return await prepare_stack(agent, secrets, warm_model=self._warm_once)

    async def _warm_once(self, model: object, warm: Callable[[], Awaitable[Any]]) -> None:
        """Warm a shared model the first time a stack has it (a failed warm-up is tried again)."""
        known = self._warm_models.get(id(model))
        task = known[1] if known is not None and known[0] is model else None
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):

            async def run() -> None:
                await warm()

            task = asyncio.ensure_future(run())
            self._warm_models[id(model)] = (model, task)
        await asyncio.shield(task)

    async def close(self) -> None:
        warming = [warm for _, warm in self._warm_models.values()]
        for task in [*self._stacks.values(), *warming]:
            task.cancel()
        await asyncio.gather(*self._stacks.values(), *warming, return_exceptions=True)
