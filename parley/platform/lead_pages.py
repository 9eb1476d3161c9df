"""What the lead pages show (``server/routes/lead_pages.py``): the public form of an organization, the
lead and business a signed call-back link names, and a business's leads page.

The pages are reached without an API key: the form by an organization's slug (what it shows is public
anyway: the organization's name and the categories it takes leads in; an organization without an active
business has no form, and its slug answers exactly as an unknown one does), the others by signed links
(``platform/links.py``), whose signature vouches for the ids they carry, so these reads are not scoped
by an organization the way API reads are. They read; acting (asking for a call-back) goes through
``platform/callbacks.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from parley.platform.agents import NotFound
from parley.platform.leads import NO_LEAD_FORM, lead_form_org
from parley.store.db import Database
from parley.store.models import Business, Lead, LeadMatch, Organization

MAX_CATEGORIES = 200


@dataclass(frozen=True, slots=True)
class FormView:
    org_id: str
    org_slug: str
    org_name: str
    categories: list[str]
    """Categories the organization's active businesses take (the form offers these); never empty, since
    an organization without an active business has no form."""


@dataclass(frozen=True, slots=True)
class CallbackTarget:
    lead: Lead
    business: Business
    org_name: str


class LeadPages:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def form(self, org_ref: str) -> FormView:
        """The form of the organization with this slug (or id), which exists only while it has an active
        business (``leads.lead_form_org``); ``NotFound`` otherwise, the same whichever the reason."""
        async with self.db.session() as session:
            org = await lead_form_org(session, org_ref)
            if org is None:
                raise NotFound(NO_LEAD_FORM)
            categories = await session.scalars(
                select(Business.category)
                .where(Business.org_id == org.id, Business.active.is_(True))
                .distinct()
                .order_by(Business.category)
                .limit(MAX_CATEGORIES)
            )
            return FormView(org.id, org.slug, org.name, list(categories))

    async def business(self, business_id: str) -> tuple[Business, str] | None:
        """The business a signed leads-page link names, with its organization's name."""
        async with self.db.session() as session:
            row = (
                await session.execute(
                    select(Business, Organization.name)
                    .join(Organization, Organization.id == Business.org_id)
                    .where(Business.id == business_id)
                )
            ).first()
        return None if row is None else (row[0], row[1])

    async def callback_target(self, lead_id: str, business_id: str) -> CallbackTarget | None:
        """The lead and business a signed call-back link names, if the lead was sent to that business."""
        async with self.db.session() as session:
            row = (
                await session.execute(
                    select(Lead, Business, Organization.name)
                    .join(LeadMatch, LeadMatch.lead_id == Lead.id)
                    .join(Business, Business.id == LeadMatch.business_id)
                    .join(Organization, Organization.id == Lead.org_id)
                    .where(Lead.id == lead_id, Business.id == business_id, Business.org_id == Lead.org_id)
                )
            ).first()
        return None if row is None else CallbackTarget(row[0], row[1], row[2])
