"""What still names an agent and would break if it were deleted.

A phone number routes its inbound calls to an agent, and a business's leads are called back by one. Agents
are deleted softly, so those rows keep the id of an agent nobody can run: calls to the number are refused
(``<Reject/>``) before any call is on the books, and call-backs fail. So a deletion is refused while
anything routes to the agent, and the refusal names what does.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.store.models import Agent, Business, PhoneNumber

SHOWN = 10
"""Names listed in the message; the exception carries them all."""


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return shown if len(names) <= SHOWN else f"{shown} and {len(names) - SHOWN} more"


class AgentInUse(ValueError):
    """The agent still answers ``numbers`` (E.164) or calls back the leads of ``businesses`` (ids): route
    them to another agent first. An API answers 409."""

    def __init__(self, agent: Agent, numbers: list[str], businesses: list[tuple[str, str]]) -> None:
        uses: list[str] = []
        if numbers:
            uses.append(f"answers {_listed(numbers)}")
        if businesses:
            uses.append(
                f"calls back the leads of {_listed([f'{name} ({ident})' for ident, name in businesses])}"
            )
        hints: list[str] = []
        if numbers:
            hints.append(
                "a number: parley numbers remove NUMBER, then parley numbers add NUMBER --agent OTHER "
                '(or PATCH /v1/phone-numbers/{id} {"agent": "OTHER"})'
            )
        if businesses:
            hints.append('a business: PATCH /v1/businesses/{id} {"agent_id": "OTHER"} or null')
        super().__init__(
            f"agent {agent.name} ({agent.id}) is still in use: it {' and '.join(uses)}. "
            f"Route them to another agent first ({'; '.join(hints)})"
        )
        self.numbers = numbers
        self.businesses = [ident for ident, _ in businesses]


async def refuse_if_in_use(session: AsyncSession, agent: Agent) -> None:
    """Raise ``AgentInUse`` when a phone number or a business (deactivated ones too: they can be made
    active again) still names ``agent``."""
    numbers = list(
        await session.scalars(
            select(PhoneNumber.number).where(PhoneNumber.agent_id == agent.id).order_by(PhoneNumber.number)
        )
    )
    businesses = [
        (ident, name)
        for ident, name in await session.execute(
            select(Business.id, Business.name).where(Business.agent_id == agent.id).order_by(Business.id)
        )
    ]
    if numbers or businesses:
        raise AgentInUse(agent, numbers, businesses)
