"""Agents as named, versioned configuration. Every change to the configuration is a new version; a call
records the version it ran with, so what an agent was told at the time of a call is never lost."""

from __future__ import annotations

from typing import Any

import structlog
from pydantic import ValidationError

from parley.config import get_settings
from parley.engine.agent import AgentConfig
from parley.platform.schemas import AgentCreate, AgentOut, AgentPatch, AgentUpdate, AgentVersionOut, Page
from parley.stack import ProviderError, check_operator_policy
from parley.store.agents import FILE, AgentRepository
from parley.store.db import Database
from parley.store.models import Agent, AgentVersion
from parley.webhooks.guard import UrlPolicy, UrlRefused

__all__ = ["AgentService", "BrokenAgent", "Conflict", "InvalidConfig", "NotFound", "ProviderError"]

log = structlog.get_logger("parley.platform.agents")


class NotFound(LookupError):
    pass


class Conflict(ValueError):
    pass


class BrokenAgent(Conflict):
    """An agent whose latest stored version no longer passes the configuration check (``checked_config``):
    no call can run it until its configuration is fixed. Raised before anything is written."""

    def __init__(self, agent: Agent, version: AgentVersion, problem: str) -> None:
        fix = (
            "fix the agent's YAML or Python file"
            if agent.source == FILE
            else f"fix it with PATCH /v1/agents/{agent.id} (or `parley agents update {agent.id}`)"
        )
        super().__init__(
            f"agent {agent.name!r} ({agent.id}) cannot start a call: its stored configuration "
            f"(version {version.version}) no longer loads ({problem}); {fix}"
        )
        self.agent_id = agent.id
        self.agent_name = agent.name
        self.version = version.version
        self.problem = problem


class InvalidConfig(ValueError):
    """A patched configuration that is no valid agent: ``errors`` as pydantic gives them, inputs left out."""

    def __init__(self, error: ValidationError) -> None:
        super().__init__(f"invalid agent configuration: {error.error_count()} error(s)")
        self.errors = error.errors(include_input=False, include_url=False)


def _check_policy(config: AgentConfig) -> None:
    """The operator's policy for a configuration being saved: ``check_operator_policy``, and a webhook
    tool's port (refused now, naming the tool, rather than at every call). The rest of a tool's URL is
    checked at each call, so an operator who tightens the policy need not edit agents."""
    check_operator_policy(config)
    policy = UrlPolicy.from_settings(get_settings())  # the policy the tool is called under (stack.py)
    for index, tool in enumerate(config.tools):
        if tool.kind == "webhook" and tool.url is not None:
            try:
                policy.check_url_port(tool.url)
            except UrlRefused as exc:
                raise ProviderError(f"tools.{index}.url: {exc}") from exc


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396: an object merges key by key (null removes the key), anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def _stored(config: AgentConfig) -> dict[str, Any]:
    return config.model_dump(mode="json")


def checked_config(version: AgentVersion) -> tuple[AgentConfig | dict[str, Any], str | None]:
    """A stored version's configuration, and why it no longer loads (None when it does; then the
    configuration as stored). Checks grow stricter between releases (a ``$ref`` leading back to itself,
    a premium-rate transfer number), so a version saved earlier may fail one."""
    try:
        return AgentConfig.model_validate(version.config), None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        )
        return dict(version.config), problems


def readable_config(version: AgentVersion) -> tuple[AgentConfig | dict[str, Any], str | None]:
    """``checked_config``, logged when it fails: a version that no longer loads is still shown, as
    stored and with the reason, so an organization's agent list never fails over one old agent, and the
    agent can be fixed with a PATCH."""
    config, problems = checked_config(version)
    if problems is not None:
        log.warning(
            "a stored agent version no longer validates",
            agent_id=version.agent_id,
            version=version.version,
            problems=problems,
        )
    return config, problems


def runnable_config(agent: Agent, version: AgentVersion) -> AgentConfig:
    """The configuration a call runs with; ``BrokenAgent`` when the stored version no longer loads."""
    config, problem = readable_config(version)
    if problem is not None:
        raise BrokenAgent(agent, version, problem)
    assert isinstance(config, AgentConfig)
    return config


def _refuse_file_record(agent: Agent) -> None:
    """A file agent's record changes with its file only: neither changed nor removed through the API."""
    if agent.source == FILE:
        raise Conflict(
            f"agent {agent.name!r} is the record of the operator's YAML or Python agent: its calls "
            "are filed here, and it changes with its file"
        )


def agent_out(agent: Agent, version: AgentVersion) -> AgentOut:
    config, problem = readable_config(version)
    return AgentOut(
        id=agent.id,
        name=agent.name,
        description=agent.description,
        version=version.version,
        config=config,
        problem=problem,
        source="file" if agent.source == FILE else "api",
        created_at=agent.created_at,
        updated_at=agent.updated_at,
    )


def version_out(version: AgentVersion) -> AgentVersionOut:
    config, problem = readable_config(version)
    return AgentVersionOut(
        agent_id=version.agent_id,
        version=version.version,
        config=config,
        problem=problem,
        created_at=version.created_at,
    )


class AgentService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, org_id: str, request: AgentCreate) -> AgentOut:
        _check_policy(request.config)
        name = request.name or request.config.name
        config = request.config.model_copy(update={"name": name})
        async with self.db.session() as session:
            repo = AgentRepository(session)
            if (taken := await repo.by_name(org_id, name)) is not None:
                whose = " (the record of the operator's YAML or Python agent)" if taken.source == FILE else ""
                raise Conflict(f"an agent named {name!r} already exists{whose}")
            agent = await repo.create(org_id, name, _stored(config), request.description)
            version = await repo.version(agent.id)
            assert version is not None
            return agent_out(agent, version)

    async def _find(self, repo: AgentRepository, org_id: str, ref: str) -> Agent:
        """An agent by id, or by name (what people type on the command line)."""
        agent = await repo.by_ref(org_id, ref)
        if agent is None:
            raise NotFound(f"no agent {ref!r}")
        return agent

    async def get(self, org_id: str, ref: str, version: int | None = None) -> AgentOut:
        async with self.db.session() as session:
            repo = AgentRepository(session)
            agent = await self._find(repo, org_id, ref)
            found = await repo.version(agent.id, version)
            if found is None:
                raise NotFound(f"agent {ref!r} has no version {version}")
            return agent_out(agent, found)

    async def check_runnable(self, org_id: str, ref: str) -> None:
        """What starting a call with the agent now would meet: ``NotFound`` for an unknown agent,
        ``BrokenAgent`` when its latest stored version no longer loads. For requests that queue a call
        to start later (an outbound call), so that they are refused now rather than fail when dialed."""
        async with self.db.session() as session:
            repo = AgentRepository(session)
            agent = await self._find(repo, org_id, ref)
            version = await repo.version(agent.id, agent.latest_version)
            assert version is not None
            runnable_config(agent, version)

    async def versions(self, org_id: str, ref: str) -> list[AgentVersionOut]:
        async with self.db.session() as session:
            repo = AgentRepository(session)
            agent = await self._find(repo, org_id, ref)
            return [version_out(v) for v in await repo.versions(agent.id)]

    async def page(self, org_id: str, limit: int = 50, cursor: str | None = None) -> Page[AgentOut]:
        async with self.db.session() as session:
            repo = AgentRepository(session)
            agents, next_cursor = await repo.page(org_id, limit, cursor)
            out = []
            for agent in agents:
                version = await repo.version(agent.id, agent.latest_version)
                assert version is not None
                out.append(agent_out(agent, version))
            return Page[AgentOut](data=out, next_cursor=next_cursor)

    async def update(self, org_id: str, ref: str, request: AgentUpdate | AgentPatch) -> AgentOut:
        """``AgentUpdate`` replaces the configuration; ``AgentPatch`` changes only what it sends."""
        if isinstance(request, AgentUpdate) and request.config is not None:
            _check_policy(request.config)
        async with self.db.session() as session:
            repo = AgentRepository(session)
            agent = await self._find(repo, org_id, ref)
            _refuse_file_record(agent)
            if request.name is not None and request.name != agent.name:
                if await repo.by_name(org_id, request.name) is not None:
                    raise Conflict(f"an agent named {request.name!r} already exists")
                agent.name = request.name
            if request.description is not None:
                agent.description = request.description
            version = await repo.version(agent.id, agent.latest_version)
            assert version is not None
            if request.config is not None or request.name is not None:
                current, problem = readable_config(version)
                if problem is not None and request.config is None:
                    raise Conflict(f"the stored configuration no longer loads ({problem}): send a fixed one")
                config = self._changed(current, version.config, request).model_copy(
                    update={"name": agent.name}
                )
                if config != current:
                    version = await repo.add_version(agent, _stored(config))
            return agent_out(agent, version)

    @staticmethod
    def _changed(
        current: AgentConfig | dict[str, Any], stored: dict[str, Any], request: AgentUpdate | AgentPatch
    ) -> AgentConfig:
        if request.config is None:
            assert isinstance(current, AgentConfig)  # update() refuses a rename of a broken version
            return current
        if isinstance(request, AgentUpdate):
            return request.config
        try:
            config = AgentConfig.model_validate(merge_patch(stored, request.config))
        except ValidationError as exc:
            raise InvalidConfig(exc) from exc
        _check_policy(config)
        return config

    async def delete(self, org_id: str, ref: str) -> None:
        """Remove an API agent. The record of a file agent is refused (``Conflict``): the operator still
        serves that agent, whose next call would file it again under a new record."""
        async with self.db.session() as session:
            repo = AgentRepository(session)
            agent = await self._find(repo, org_id, ref)
            _refuse_file_record(agent)
            await repo.delete(agent)

    async def ensure(self, org_id: str, config: AgentConfig) -> tuple[Agent, AgentVersion]:
        """The record of a file agent named like ``config``, at a version equal to ``config`` (created as
        needed): how a call run from a YAML file or a Python agent is filed under a stored agent. An
        agent made through the API with that name is never touched: the record is another agent."""
        async with self.db.session() as session:
            repo = AgentRepository(session)
            agent = await repo.by_name(org_id, config.name, source=FILE)
            if agent is None:
                agent = await repo.create(org_id, config.name, _stored(config), source=FILE)
                version = await repo.version(agent.id)
                assert version is not None
                return agent, version
            latest = await repo.version(agent.id, agent.latest_version)
            assert latest is not None
            # Compared as stored: a Python agent's config is a ``PythonAgentConfig`` (its tools are
            # code), which never equals the ``AgentConfig`` read back, however alike the two are.
            if readable_config(latest)[0] == AgentConfig.model_validate(_stored(config)):
                return agent, latest
            return agent, await repo.add_version(agent, _stored(config))
