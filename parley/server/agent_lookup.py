"""Which agent a live session's client names, and which a client without a session token may have.

A client names an agent in ``start {agent}`` (the voice page, in ``?agent=``). Without a token only a
public agent answers, and a stored agent that is not public is unknown word for word like a name nobody
has. A token's call pins its agent version; ``check_pinned`` holds it to what the client named.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from parley.engine.agent import AgentConfig
from parley.platform.directory import AgentDirectory, StoredAgent
from parley.server.registry import AdmissionError
from parley.server.stacks import AgentCatalog
from parley.transports.ws_protocol import ErrorCode

if TYPE_CHECKING:
    from parley.platform.live import LiveCall
    from parley.platform.runtime import Platform


@dataclass(frozen=True, slots=True)
class AgentChoice:
    """An agent a client may pick: ``ref`` is what it sends as ``start {agent}`` (a name, or a stored
    agent's id when its name would not find it); ``source`` is ``file`` (the operator's) or ``store``."""

    ref: str
    name: str
    description: str
    source: str


def _stored_choice(stored: StoredAgent, ref: str) -> AgentChoice:
    """A tenant's public agent as anyone may see it: its description, never a word of its prompt (which
    may hold instructions meant for the model only)."""
    return AgentChoice(ref, stored.name, stored.description or "", "store")


def _refuse_unless_public(found: AgentConfig | StoredAgent) -> None:
    """Without a token only public agents answer (the operator's or an organization's)."""
    config = found.config if isinstance(found, StoredAgent) else found
    if config.public:
        return
    if isinstance(found, StoredAgent):
        how = "start with a session token from POST /v1/agents/{id}/sessions"
    else:  # the operator's own agent: its file decides
        how = "the operator can set `public: true` in its file (YAML, or Agent(public=True) in Python)"
    raise AdmissionError(ErrorCode.UNAUTHORIZED, f"agent '{config.name}' is not public: {how}")


def check_pinned(call: LiveCall, named: str | None, stored: StoredAgent | None) -> None:
    """The call's pinned version decides, so check it: a token's call must be the agent the client
    named (if it named one), and a public agent made private since it was looked up no longer answers."""
    agent = call.agent
    if named is not None and named not in (agent.name, call.call.agent_id):
        raise AdmissionError(
            ErrorCode.UNKNOWN_AGENT,
            f"this session token is for agent '{agent.name}', not {named!r}; send the token alone",
        )
    if stored is not None:
        _refuse_unless_public(agent)


@dataclass(frozen=True, slots=True)
class AgentLookup:
    """The agents a live runtime reaches right now: the operator's ``catalog``, and the stored agents
    while ``platform`` (the store) is open."""

    catalog: AgentCatalog
    platform: Platform | None

    async def find_agent(self, ref: str | None) -> AgentConfig | StoredAgent:
        """The agent ``start {agent: ref}`` names without a token, or ``AdmissionError(unknown_agent)``
        listing what this caller could pick instead. Whether it may talk to it is checked apart.

        The operator's agents (YAML files, ``serve --agent``) come first; then, with the store open, the
        operator's organization's stored agents by name or id, then any organization's agent by id (an
        id is unguessable: it is the link a tenant shares to its public agent). Never a fallback."""
        found: AgentConfig | StoredAgent | None = self.catalog.get(ref)
        if found is None and ref is not None and self.platform is not None:
            directory = AgentDirectory(self.platform.db)
            found = await directory.find(self.platform.default_org_id, ref) or await directory.find_by_id(ref)
        if found is None:
            raise await self._unknown_agent(ref)
        return found

    async def find_public_agent(self, ref: str | None) -> AgentConfig | StoredAgent:
        """``find_agent``, for a client without a token: only a public agent is admitted. A stored agent
        that is not public, looked up by name, is ``unknown_agent`` word for word like a name nobody has:
        a stranger may not learn by asking which names an organization uses (docs/security.md)."""
        found = await self.find_agent(ref)
        if isinstance(found, StoredAgent) and not found.config.public and ref != found.id:
            raise await self._unknown_agent(ref)
        _refuse_unless_public(found)
        return found

    async def _unknown_agent(self, ref: str | None) -> AdmissionError:
        names = ", ".join(choice.ref for choice in await self.agent_choices()) or "none"
        return AdmissionError(ErrorCode.UNKNOWN_AGENT, f"no agent named {ref!r} (available: {names})")

    async def agent_choices(self) -> list[AgentChoice]:
        """What an anonymous client may pick by name: the operator's agents, then the operator's
        organization's public stored agents that no file shadows."""
        catalog = self.catalog
        choices = [AgentChoice(s.name, s.name, s.description, "file") for s in catalog.summaries()]
        if self.platform is not None:
            taken = {choice.name for choice in choices}
            for stored in await AgentDirectory(self.platform.db).public(self.platform.default_org_id):
                if stored.name not in taken:
                    choices.append(_stored_choice(stored, stored.name))
        return choices

    async def agent_offer(self, ref: str | None) -> dict[str, Any]:
        """The voice page's agent list, and what became of the agent it was asked to select (``?agent=``):
        ``selected`` (the choice's ``ref``) or ``agent_error`` ``{code, message}``, as ``start`` would say."""
        choices = await self.agent_choices()
        offer: dict[str, Any] = {"default_agent": self.catalog.default, "selected": None}
        if ref:
            try:
                found = await self.find_public_agent(ref)
            except AdmissionError as exc:
                offer["agent_error"] = {"code": str(exc.code), "message": exc.message}
            else:
                listed = {choice.ref for choice in choices if choice.source == "store"}
                if isinstance(found, StoredAgent):
                    if found.name in listed and found.org_id == self._default_org():
                        offer["selected"] = found.name
                    else:  # reached by its id: offered under it, so ``start`` finds the same agent
                        choices.append(_stored_choice(found, found.id))
                        offer["selected"] = found.id
                else:
                    offer["selected"] = found.name
        offer["agents"] = [
            {"name": c.name, "ref": c.ref, "description": c.description, "source": c.source} for c in choices
        ]
        return offer

    def _default_org(self) -> str | None:
        return None if self.platform is None else self.platform.default_org_id
