"""Businesses and leads: what may come in, which businesses a lead goes to, and who is told.

A lead is validated here (phone numbers to E.164 in the server's default region, emails, bounded text,
a category slug), matched to the organization's active businesses of its category whose service area
holds it and that are open at the time (in each business's time zone), and written in ONE transaction with
its matches and the notifications owed (the outbox, ``lead_notifications``): a lead is never stored without
the messages that announce it, nor announced without being stored. Workers deliver the outbox; ``wake``
tells them at once that there is something to send. A lead no business matches is kept as ``unmatched``
and the operator (``PARLEY_OPERATOR_EMAIL``) is told.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, available_timezones

import phonenumbers
import structlog
from phonenumbers import timezone as number_time_zones
from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.config import Settings
from parley.inputs import PlainName, SafeStr, refuse_nul
from parley.platform.agents import Conflict, NotFound
from parley.platform.schemas import Page
from parley.store.agents import AgentRepository
from parley.store.db import Database
from parley.store.leads import LeadRepository
from parley.store.models import Business, Lead, LeadMatch, LeadNotification, Organization
from parley.store.tenants import TenantRepository
from parley.store.types import utcnow
from parley.telephony.number_rules import RefusedNumber, refuse_premium_rate

log = structlog.get_logger("parley.platform.leads")

__all__ = [
    "BusinessIn",
    "BusinessOut",
    "BusinessUpdate",
    "Conflict",
    "InvalidInput",
    "LeadIn",
    "LeadOut",
    "LeadService",
    "NotFound",
    "NotificationOut",
    "SubmitResult",
]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
EARTH_RADIUS_KM = 6371.0088
Source = Literal["form", "api", "cli"]
LeadStatus = Literal["matched", "unmatched", "callback_queued", "called", "callback_failed"]


class InvalidInput(ValueError):
    """Input that passed its shape but not a check that needs the server (a phone number in the default
    region, a business update that leaves no service area): 422, naming the field like pydantic does."""

    def __init__(self, field: str, message: str, type_: str = "value_error") -> None:
        super().__init__(f"{field}: {message}")
        self.errors: list[dict[str, Any]] = [{"type": type_, "loc": [field], "msg": message}]

    @classmethod
    def from_validation(cls, exc: ValidationError) -> InvalidInput:
        errors = [{"type": e["type"], "loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        first = errors[0] if errors else {"loc": ["body"], "msg": "invalid"}
        made = cls(".".join(str(part) for part in first["loc"]) or "body", str(first["msg"]))
        made.errors = errors
        return made


# --- values at the edge -------------------------------------------------------------------------------


def category_slug(value: str) -> str:
    """``"HVAC Repair"`` → ``hvac-repair``: the one spelling categories are stored and matched in."""
    slug = re.sub(r"[\s_]+", "-", value.strip().lower())
    if not re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", slug) or len(slug) > 64:
        raise PydanticCustomError(
            "category", "a category is letters, digits and single dashes (plumbing, hvac-repair), ≤ 64"
        )
    return slug


def postal_code(value: str) -> str:
    """Upper case without spaces (``sw1a 1aa`` → ``SW1A1AA``), so a lead's code finds a business's."""
    code = re.sub(r"\s+", "", value).upper()
    if not re.fullmatch(r"[A-Z0-9-]{2,16}", code):
        raise PydanticCustomError("postal_code", "a postal code is 2 to 16 letters, digits or dashes")
    return code


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def time_zone(value: str) -> str:
    """An IANA time zone this server knows (``Europe/London``); a name, never a path."""
    if value not in _zones():
        raise PydanticCustomError("time_zone", "unknown time zone (an IANA name such as America/New_York)")
    return value


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def opening_range(value: list[str]) -> list[str]:
    """``["09:00", "17:00"]``; an end before the start runs past midnight (``["22:00", "02:00"]``)."""
    if len(value) != 2:
        raise PydanticCustomError("hours", 'a range is ["HH:MM", "HH:MM"]')
    start, end = value
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", start) or not re.fullmatch(
        r"([01]\d|2[0-3]):[0-5]\d|24:00", end
    ):
        raise PydanticCustomError("hours", 'times are "HH:MM" from 00:00 to 23:59 (an end may be 24:00)')
    if _minutes(start) == _minutes(end) % (24 * 60):
        raise PydanticCustomError("hours", "a range must not start where it ends (for all day: 00:00-24:00)")
    return [start, end]


def phone_e164(value: str, region: str, field: str) -> str:
    """A phone number as E.164, read in ``region`` when written without ``+`` and a country code; never a
    premium-rate one, since a lead's is called back and a business's is texted (toll fraud)."""
    try:
        parsed = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        raise InvalidInput(field, "not a phone number", "phone") from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidInput(
            field, f"not a valid phone number (one without a +country code is read as {region})", "phone"
        )
    try:
        refuse_premium_rate(parsed, field)
    except RefusedNumber as exc:
        raise InvalidInput(field, exc.detail, exc.reason) from None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


Category = Annotated[str, AfterValidator(refuse_nul), AfterValidator(category_slug)]
PostalCode = Annotated[str, Field(max_length=32), AfterValidator(refuse_nul), AfterValidator(postal_code)]
TimeZone = Annotated[str, Field(max_length=64), AfterValidator(time_zone)]
Range = Annotated[list[Annotated[str, Field(max_length=5)]], AfterValidator(opening_range)]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
Hours = dict[Weekday, Annotated[list[Range], Field(max_length=8)]]
Phone = Annotated[
    SafeStr, Field(min_length=3, max_length=40, description="E.164, or national in the server's region")
]
Email = Annotated[EmailStr, Field(max_length=320)]
Latitude = Annotated[float, Field(ge=-90, le=90)]
Longitude = Annotated[float, Field(ge=-180, le=180)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_strip_whitespace=True)


def _check_point(latitude: float | None, longitude: float | None) -> None:
    if (latitude is None) != (longitude is None):
        raise PydanticCustomError("location", "latitude and longitude come together")


class BusinessIn(_In):
    name: PlainName = Field(min_length=1, max_length=200)
    category: Category
    latitude: Latitude | None = None
    longitude: Longitude | None = None
    radius_km: float | None = Field(None, gt=0, le=20_000, description="served around the point")
    postal_codes: list[PostalCode] = Field(default_factory=list, max_length=2000)
    hours: Hours = Field(
        default_factory=dict,
        description='{"mon": [["09:00", "17:00"]], …} in time_zone; a missing day is closed, {} always open',
    )
    time_zone: TimeZone
    notify_email: Email
    notify_phone: Phone
    agent_id: SafeStr | None = Field(
        None, max_length=200, description="the agent that calls leads back: its id or name (stored as its id)"
    )
    active: bool = True

    @model_validator(mode="after")
    def _area(self) -> BusinessIn:
        _check_point(self.latitude, self.longitude)
        if (self.radius_km is None) != (self.latitude is None):
            raise PydanticCustomError("service_area", "a radius needs a point (latitude, longitude) and back")
        if self.radius_km is None and not self.postal_codes:
            raise PydanticCustomError(
                "service_area", "a service area is needed: latitude, longitude and radius_km, or postal_codes"
            )
        self.postal_codes = sorted(set(self.postal_codes))
        return self


class BusinessUpdate(_In):
    """Only the fields given change; the result must still be a valid business."""

    name: PlainName | None = Field(None, min_length=1, max_length=200)
    category: Category | None = None
    latitude: Latitude | None = None
    longitude: Longitude | None = None
    radius_km: float | None = Field(None, gt=0, le=20_000)
    postal_codes: list[PostalCode] | None = Field(None, max_length=2000)
    hours: Hours | None = None
    time_zone: TimeZone | None = None
    notify_email: Email | None = None
    notify_phone: Phone | None = None
    agent_id: SafeStr | None = Field(None, max_length=200)
    active: bool | None = None


class LeadIn(_In):
    name: PlainName = Field(min_length=1, max_length=200)
    phone: Phone
    email: Email | None = None
    category: Category
    latitude: Latitude | None = None
    longitude: Longitude | None = None
    postal_code: PostalCode | None = None
    description: SafeStr = Field("", max_length=2000)
    consent_to_call: bool = Field(False, description="without it the lead is never called back")

    @model_validator(mode="after")
    def _point(self) -> LeadIn:
        _check_point(self.latitude, self.longitude)
        return self


class BusinessOut(BaseModel):
    id: str
    name: str
    category: str
    latitude: float | None
    longitude: float | None
    radius_km: float | None
    postal_codes: list[str]
    hours: dict[str, list[list[str]]]
    time_zone: str
    notify_email: str
    notify_phone: str
    agent_id: str | None
    active: bool
    created_at: datetime
    updated_at: datetime


class LeadMatchOut(BaseModel):
    business_id: str
    distance_km: float | None
    open_at_submit: bool = Field(description="false: no business in the area was open, all were told")


class LeadOut(BaseModel):
    id: str
    name: str
    phone: str
    email: str | None
    category: str
    latitude: float | None
    longitude: float | None
    postal_code: str | None
    description: str
    consent_to_call: bool
    source: str
    status: str
    time_zone: str | None
    outcome: dict[str, Any] | None
    client_ip: str | None
    matches: list[LeadMatchOut]
    created_at: datetime
    updated_at: datetime


class LeadReceipt(BaseModel):
    """What the public form answers: the lead is in; nothing about the businesses."""

    id: str
    received_at: datetime


class NotificationOut(BaseModel):
    id: str
    lead_id: str | None = Field(description="the lead it tells of (null: a message a call's agent sent)")
    call_id: str | None = Field(description="the call whose agent sent it (null: a lead notification)")
    business_id: str | None = Field(description="null: to the operator")
    kind: str
    channel: str
    recipient: str
    status: str
    attempts: int
    next_attempt_at: datetime
    provider_id: str | None
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None


@dataclass(frozen=True, slots=True)
class SubmitResult:
    lead: LeadOut
    created: bool
    """False: the idempotency key named a lead already there, which is what ``lead`` is."""


# --- matching -------------------------------------------------------------------------------------------


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine) on a spherical Earth: within 0.5 % of the true figure."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def is_open(hours: dict[str, Any], zone: str, at: datetime) -> bool:
    """Whether ``hours`` (local to ``zone``) hold the instant ``at``. ``{}`` is always open; a range that
    ends before it starts runs into the next day (Friday's 22:00-02:00 is open at 01:00 on Saturday)."""
    if not hours:
        return True
    local = at.astimezone(ZoneInfo(zone))
    today, yesterday = WEEKDAYS[local.weekday()], WEEKDAYS[(local.weekday() - 1) % 7]
    minute = local.hour * 60 + local.minute
    for start, end in hours.get(today, []):
        s, e = _minutes(start), _minutes(end)
        if (s < e and s <= minute < e) or (s > e and minute >= s):
            return True
    for start, end in hours.get(yesterday, []):
        s, e = _minutes(start), _minutes(end)
        if s > e and minute < e:
            return True
    return False


@dataclass(frozen=True, slots=True)
class Match:
    business: Business
    distance_km: float | None
    open: bool


def match(lead: LeadIn, businesses: Sequence[Business], at: datetime) -> list[Match]:
    """The businesses (of the lead's category, active) to tell of a lead: those whose area holds it and
    that are open at ``at``; when some hold it but none is open, all of those (never dropped for the hour).

    In area: within ``radius_km`` of the business's point (both have coordinates), or the lead's postal
    code among the business's."""
    in_area: list[Match] = []
    for business in businesses:
        distance = None
        if (
            lead.latitude is not None
            and lead.longitude is not None
            and business.latitude is not None
            and business.longitude is not None
        ):
            distance = distance_km(lead.latitude, lead.longitude, business.latitude, business.longitude)
        by_radius = distance is not None and business.radius_km is not None and distance <= business.radius_km
        by_code = lead.postal_code is not None and lead.postal_code in business.postal_codes
        if by_radius or by_code:
            in_area.append(Match(business, distance, is_open(business.hours, business.time_zone, at)))
    open_now = [m for m in in_area if m.open]
    chosen = open_now or in_area
    return sorted(chosen, key=lambda m: (m.distance_km is None, m.distance_km or 0.0, m.business.id))


def lead_time_zone(phone: str, matches: Sequence[Match]) -> str | None:
    """The lead's time zone: its phone number's when that maps to exactly one, else the nearest matched
    business's (a lead in a business's service area is most likely in its zone), else unknown."""
    zones = number_time_zones.time_zones_for_number(phonenumbers.parse(phone, None))
    if len(zones) == 1 and zones[0] in _zones():
        return str(zones[0])
    return matches[0].business.time_zone if matches else None


# --- the public surface ---------------------------------------------------------------------------------

NO_LEAD_FORM = "there is no such lead form"
"""Why a public form or its endpoint is refused: one text whether the organization is unknown or takes no
leads, so an anonymous visitor cannot tell the two apart (nor probe which slugs exist)."""


async def lead_form_org(session: AsyncSession, ref: str) -> Organization | None:
    """The organization with this slug (or id) when it has a public lead form: at least one **active**
    business, the only kind ``match`` ever picks (``LeadRepository.candidates``). Without one, a lead
    posted anonymously could reach no business, so the form does not exist; None, as for no organization.
    """
    tenants = TenantRepository(session)
    org = await tenants.org_by_slug(ref) or await tenants.get_org(ref)
    if org is None:
        return None
    active = await session.scalar(
        select(Business.id).where(Business.org_id == org.id, Business.active.is_(True)).limit(1)
    )
    return org if active is not None else None


# --- views ----------------------------------------------------------------------------------------------


def business_out(business: Business) -> BusinessOut:
    return BusinessOut.model_validate(business, from_attributes=True)


def lead_out(lead: Lead, matches: Sequence[LeadMatch]) -> LeadOut:
    views = [LeadMatchOut.model_validate(m, from_attributes=True) for m in matches if m.lead_id == lead.id]
    data = {name: getattr(lead, name) for name in LeadOut.model_fields if name != "matches"}
    return LeadOut(**data, matches=views)


def notification_out(row: LeadNotification) -> NotificationOut:
    return NotificationOut.model_validate(row, from_attributes=True)


_COMPARED = ("name", "phone", "email", "category", "latitude", "longitude", "postal_code", "description",
             "consent_to_call")  # fmt: skip
"""What makes two submissions under one idempotency key the same lead."""


class LeadService:
    """Use-cases over businesses and leads. ``wake`` is called after a commit that wrote notifications
    (an ``asyncio.Event.set``), so the delivery worker starts at once rather than at its next poll."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        wake: Callable[[], None] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.settings = settings
        self.wake = wake
        self.clock = clock

    @property
    def region(self) -> str:
        return self.settings.default_region

    # --- businesses -------------------------------------------------------------------------------------

    async def create_business(self, org_id: str, business: BusinessIn) -> BusinessOut:
        fields = business.model_dump()
        fields["notify_phone"] = phone_e164(business.notify_phone, self.region, "notify_phone")
        async with self.db.session() as session:
            fields["agent_id"] = await self._agent_id(session, org_id, business.agent_id)
            stored = await LeadRepository(session).add_business(org_id, fields)
            return business_out(stored)

    async def business(self, org_id: str, business_id: str) -> BusinessOut:
        async with self.db.session() as session:
            return business_out(await self._business(LeadRepository(session), org_id, business_id))

    async def businesses(
        self,
        org_id: str,
        *,
        category: str | None = None,
        active: bool | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[BusinessOut]:
        async with self.db.session() as session:
            rows, next_cursor = await LeadRepository(session).business_page(
                org_id, category=category, active=active, limit=limit, cursor=cursor
            )
            return Page[BusinessOut](data=[business_out(row) for row in rows], next_cursor=next_cursor)

    async def update_business(self, org_id: str, business_id: str, changes: BusinessUpdate) -> BusinessOut:
        """Apply ``changes`` and validate the whole business again (a radius without a point is refused)."""
        async with self.db.session() as session:
            stored = await self._business(LeadRepository(session), org_id, business_id)
            merged = business_out(stored).model_dump(include=set(BusinessIn.model_fields))
            merged.update(changes.model_dump(exclude_unset=True))
            try:
                business = BusinessIn.model_validate(merged)
            except ValidationError as exc:
                raise InvalidInput.from_validation(exc) from None
            fields = business.model_dump()
            fields["notify_phone"] = phone_e164(business.notify_phone, self.region, "notify_phone")
            if "agent_id" in changes.model_fields_set:  # an agent deleted since must not block a rename
                fields["agent_id"] = await self._agent_id(session, org_id, business.agent_id)
            for name, value in fields.items():
                setattr(stored, name, value)
            stored.updated_at = utcnow()
            await session.flush()
            return business_out(stored)

    async def deactivate_business(self, org_id: str, business_id: str) -> BusinessOut:
        """It gets no new leads; the leads it had keep their matches."""
        return await self.update_business(org_id, business_id, BusinessUpdate(active=False))

    async def _business(self, repo: LeadRepository, org_id: str, business_id: str) -> Business:
        found = await repo.business(org_id, business_id)
        if found is None:
            raise NotFound(f"no business {business_id}")
        return found

    async def _agent_id(self, session: Any, org_id: str, ref: str | None) -> str | None:
        """The id of the organization's agent ``ref`` names (an id or a name, as ``numbers add`` and
        ``calls dial`` take), or ``NotFound``."""
        if ref is None:
            return None
        repo = AgentRepository(session)
        found = await repo.by_ref(org_id, ref)
        if found is None:
            raise NotFound(f"no agent {ref!r}")
        return found.id

    # --- leads ------------------------------------------------------------------------------------------

    async def public_org(self, ref: str) -> str:
        """The organization a public form names, by slug or id, when it takes leads (``lead_form_org``);
        else ``NotFound``, the same for an unknown organization and one without such a business."""
        async with self.db.session() as session:
            org = await lead_form_org(session, ref)
        if org is None:
            raise NotFound(NO_LEAD_FORM)
        return org.id

    async def submit(
        self,
        org_id: str,
        lead: LeadIn,
        *,
        source: Source,
        idempotency_key: str | None = None,
        client_ip: str | None = None,
    ) -> SubmitResult:
        """Store a lead, its matches and the notifications owed, in one transaction.

        The same ``idempotency_key`` again gives back the lead it made (``created`` False) and writes
        nothing; under that key a different lead is ``Conflict``."""
        phone = phone_e164(lead.phone, self.region, "phone")
        fields = lead.model_dump() | {"phone": phone}
        at = self.clock()
        notified: list[dict[str, Any]] = []
        async with self.db.session() as session:
            repo = LeadRepository(session)
            matches = match(lead, await repo.candidates(org_id, lead.category), at)
            stored, created = await repo.insert_lead(
                org_id,
                fields
                | {
                    "source": source,
                    "idempotency_key": idempotency_key,
                    "status": "matched" if matches else "unmatched",
                    "time_zone": lead_time_zone(phone, matches),
                    "outcome": None,
                    "client_ip": client_ip,
                },
            )
            if not created:
                if any(getattr(stored, name) != fields[name] for name in _COMPARED):
                    raise Conflict(f"idempotency key {idempotency_key!r} was used for a different lead")
            else:
                await repo.add_matches(
                    [
                        {
                            "lead_id": stored.id,
                            "business_id": m.business.id,
                            "distance_km": None if m.distance_km is None else round(m.distance_km, 3),
                            "open_at_submit": m.open,
                        }
                        for m in matches
                    ]
                )
                notified = self._notifications(stored, matches)
                await repo.enqueue_notifications(org_id, stored.id, notified)
            result = SubmitResult(lead_out(stored, await repo.matches([stored.id])), created)
        if created:
            log.info(
                "lead received",
                org_id=org_id,
                lead_id=stored.id,
                source=source,
                status=stored.status,
                businesses=len(matches),
                notifications=len(notified),
            )
        if notified and self.wake is not None:
            self.wake()
        return result

    def _notifications(self, lead: Lead, matches: Sequence[Match]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for m in matches:
            rows.append({"business_id": m.business.id, "kind": "new_lead", "channel": "email",
                         "recipient": m.business.notify_email})  # fmt: skip
            rows.append({"business_id": m.business.id, "kind": "new_lead", "channel": "sms",
                         "recipient": m.business.notify_phone})  # fmt: skip
        if not matches:
            operator = self.settings.operator_email
            if operator:
                rows.append({"business_id": None, "kind": "unmatched_lead", "channel": "email",
                             "recipient": operator})  # fmt: skip
            else:
                log.warning(
                    "no business matched a lead and no operator address is set (PARLEY_OPERATOR_EMAIL)",
                    org_id=lead.org_id,
                    lead_id=lead.id,
                    category=lead.category,
                )
        return rows

    async def lead(self, org_id: str, lead_id: str) -> LeadOut:
        async with self.db.session() as session:
            repo = LeadRepository(session)
            found = await repo.lead(org_id, lead_id)
            if found is None:
                raise NotFound(f"no lead {lead_id}")
            return lead_out(found, await repo.matches([found.id]))

    async def leads(
        self,
        org_id: str,
        *,
        status: str | None = None,
        business_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[LeadOut]:
        async with self.db.session() as session:
            repo = LeadRepository(session)
            rows, next_cursor = await repo.lead_page(
                org_id, status=status, business_id=business_id, limit=limit, cursor=cursor
            )
            matches = await repo.matches([row.id for row in rows])
            return Page[LeadOut](data=[lead_out(row, matches) for row in rows], next_cursor=next_cursor)

    async def notifications(self, org_id: str, lead_id: str) -> list[NotificationOut]:
        """What the lead's outbox holds and how far each message got."""
        async with self.db.session() as session:
            repo = LeadRepository(session)
            if await repo.lead(org_id, lead_id) is None:
                raise NotFound(f"no lead {lead_id}")
            return [notification_out(row) for row in await repo.notifications(lead_id)]
