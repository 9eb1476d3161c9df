"""Agents are versioned: a change of configuration is a new version, and calls keep theirs."""

from __future__ import annotations

import pytest

from parley.artifacts.local import LocalArtifactStore
from parley.engine.agent import AgentConfig
from parley.platform.agents import AgentService, Conflict, NotFound
from parley.platform.calls import CallService
from parley.platform.directory import AgentDirectory
from parley.platform.pricing import Pricing
from parley.platform.recordings import Recordings
from parley.platform.schemas import AgentCreate, AgentUpdate
from parley.store.db import Database
from parley.store.tenants import TenantRepository


async def test_versions(db: Database, tmp_path: object) -> None:
    async with db.session() as session:
        org = (await TenantRepository(session).ensure_org("acme")).id
    agents = AgentService(db)
    calls = CallService(db, Pricing(), Recordings(db, LocalArtifactStore(tmp_path), tmp_path))  # type: ignore[arg-type]
    created = await agents.create(org, AgentCreate(name="sales", config=AgentConfig(system_prompt="Sell.")))
    assert created.version == 1 and created.config.name == "sales"
    with pytest.raises(Conflict):
        await agents.create(org, AgentCreate(name="sales"))

    first_call, config = await calls.create(org, direction="web", transport="websocket", agent_ref="sales")
    assert first_call.agent_version == 1 and config is not None and config.system_prompt == "Sell."

    same = await agents.update(org, "sales", AgentUpdate(description="the sales line"))
    assert same.version == 1 and same.description == "the sales line", "no config change, no new version"
    changed = await agents.update(
        org, created.id, AgentUpdate(config=AgentConfig(system_prompt="Sell harder."))
    )
    assert changed.version == 2 and changed.config.name == "sales"
    second_call, _ = await calls.create(org, direction="web", transport="websocket", agent_ref=created.id)

    assert [v.config.system_prompt for v in await agents.versions(org, "sales")] == ["Sell.", "Sell harder."]
    assert (await agents.get(org, "sales", version=1)).config.system_prompt == "Sell."
    _, pinned = await calls.claim(first_call.session_id)
    assert pinned is not None and pinned.system_prompt == "Sell.", "a call keeps the version it ran with"
    assert (await calls.detail(org, second_call.id)).agent_version == 2

    await agents.delete(org, "sales")
    with pytest.raises(NotFound):
        await agents.get(org, "sales")
    assert (await agents.page(org)).data == []
    assert (await calls.detail(org, first_call.id)).agent_version == 1, "history survives the delete"
    recreated = await agents.create(org, AgentCreate(name="sales"))
    assert recreated.id != created.id


async def test_ensure_files_a_yaml_agent_under_its_name(db: Database) -> None:
    async with db.session() as session:
        org = (await TenantRepository(session).ensure_org("acme")).id
    agents = AgentService(db)
    config = AgentConfig(name="simulated", first_message="Hi!")
    agent, v1 = await agents.ensure(org, config)
    _, again = await agents.ensure(org, config)
    _, v2 = await agents.ensure(org, config.model_copy(update={"first_message": "Hello!"}))
    assert (v1.version, again.version, v2.version) == (1, 1, 2)
    assert (await agents.get(org, agent.id)).version == 2


async def test_a_file_agent_never_changes_an_api_agent_of_the_same_name(db: Database) -> None:
    """Calling the operator's YAML agent ``assistant`` used to add its public configuration as a new
    version of a tenant's private API agent ``assistant``; anyone could do it, without a key."""
    async with db.session() as session:
        org = (await TenantRepository(session).ensure_org("acme")).id
    agents = AgentService(db)
    mine = AgentConfig(system_prompt="Always say PINEAPPLE.", public=False)
    made = await agents.create(org, AgentCreate(name="assistant", config=mine))
    record, _ = await agents.ensure(org, AgentConfig(name="assistant", public=True))
    again, _ = await agents.ensure(org, AgentConfig(name="assistant", public=True))
    assert record.id != made.id and again.id == record.id
    assert [v.version for v in await agents.versions(org, made.id)] == [1]
    kept = await agents.get(org, "assistant")
    assert (kept.id, kept.source, kept.config.public) == (made.id, "api", False)
    assert kept.config.system_prompt == "Always say PINEAPPLE."

    directory = AgentDirectory(db)
    assert [a.id for a in await directory.public(org)] == []
    found = await directory.find(org, "assistant")
    assert found is not None and found.id == made.id
    assert await directory.find(org, record.id) is None and await directory.find_by_id(record.id) is None

    filed = await agents.get(org, record.id)
    assert filed.source == "file"
    with pytest.raises(Conflict, match="YAML or Python agent"):
        await agents.update(org, record.id, AgentUpdate(description="mine now"))


async def test_a_file_agents_record_takes_its_name_from_the_api(db: Database) -> None:
    async with db.session() as session:
        org = (await TenantRepository(session).ensure_org("acme")).id
    agents = AgentService(db)
    await agents.ensure(org, AgentConfig(name="front-desk", public=True))
    with pytest.raises(Conflict, match="YAML or Python agent"):
        await agents.create(org, AgentCreate(name="front-desk"))
    assert await AgentDirectory(db).public(org) == [], "served from its file, never from the record"
