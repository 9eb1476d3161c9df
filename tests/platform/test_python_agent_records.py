"""A Python agent is filed under one record whose version changes only when the agent does, like a
YAML agent: not a new identical version at every call (its config is a ``PythonAgentConfig``)."""

from __future__ import annotations

from parley.agent_api import Agent, CallContext
from parley.platform.agents import AgentService
from parley.store.db import Database
from parley.store.tenants import TenantRepository


def dentist(greeting: str = "Hi!") -> Agent:
    agent = Agent(name="dentist", instructions="Book cleanings.", first_message=greeting)

    @agent.tool
    async def book(day: str, ctx: CallContext) -> str:
        """Book a cleaning on the given day."""
        return f"booked {day}"

    return agent


async def test_a_python_agent_gets_a_new_version_only_when_it_changes(db: Database) -> None:
    async with db.session() as session:
        org = (await TenantRepository(session).ensure_org("acme")).id
    agents = AgentService(db)
    served = dentist().config
    record, first = await agents.ensure(org, served)
    for _ in range(3):  # each call, and each restart with the same code
        again, same = await agents.ensure(org, served)
        assert (again.id, same.version) == (record.id, 1)
    _, restarted = await agents.ensure(org, dentist().config)
    assert restarted.version == 1
    assert [v.version for v in await agents.versions(org, record.id)] == [1]

    _, changed = await agents.ensure(org, dentist("Hello, dentist's office.").config)
    assert changed.version == 2
    assert (await agents.get(org, record.id)).config.first_message == "Hello, dentist's office."
    assert first.version == 1
