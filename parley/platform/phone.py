"""Phone calls on the books: numbers that route to agents, inbound calls, outbound calls being answered,
and what the carrier reports about them (progress, answering machines).

Carrier callbacks arrive late, twice, or out of order. Each is applied at the time the carrier stamped it
(not when it arrived) through ``CallService.set_status``, whose lifecycle ignores duplicates and
stragglers; so whatever order the callbacks of one call come in, the call ends with the same history.
Twilio's status values (https://www.twilio.com/docs/voice/api/call-resource#call-status-values) map onto
``CallStatus`` in ``TWILIO_STATUS``.

Twilio stamps a callback to the second. The call's telephony cost is the ``CallDuration`` Twilio reports
when an answered call ends (the seconds it bills,
https://www.twilio.com/docs/voice/api/call-resource#statuscallback), not a difference of such stamps; and
the session's own end, known to the microsecond, refines an end that Twilio's stamp set when it comes
within that second or the next (``CallRepository.set_status``).

A call that failed on this side (``SERVER_SIDE_FAILURES``: the server was killed and start-up recovery
closed it as ``interrupted``, its media WebSocket dropped, ``transport_error``, or a draining server hung up
an outbound call the callee had just answered, ``server_unavailable``) still ended on the carrier's line:
Twilio's ``completed`` for it comes later and is the carrier's word on that end. It is taken as a second
witness of an end already on the books, not as a contradiction: the call keeps its status, reason and end
(when this side was last alive), and telephony is billed for the carrier's ``CallDuration``, as for any
other ended call, since that is what Twilio charges. A call the carrier itself failed (``carrier_failed``,
``carrier_sip_*``) cannot have completed: that ``completed`` is refused.

Such a call may have failed here before this side saw it answered (still queued or ringing on the books,
no ``started_at``). A ``completed`` says it was answered ``CallDuration`` seconds before the carrier's
stamp, so ``started_at`` is set to that, as the "answered" callback would have set it; but never after the
end on the books (a call that had not been answered when this side lost it starts and ends there, lasting
nothing on this side). That makes it an answered call on the books, and answered calls are what telephony
bills. Without a ``CallDuration`` nothing says when it was answered, and nothing is billed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from parley.engine.agent import AgentConfig
from parley.platform.agents import BrokenAgent, Conflict, NotFound
from parley.platform.calls import CallService, summarize
from parley.platform.live import TRANSPORT_ERROR
from parley.platform.recovery import INTERRUPTED
from parley.platform.schemas import CallSummary, PhoneNumberOut, PhoneNumberUpdate
from parley.platform.usage import CARRIER_DURATION, agent_config_of, carrier_duration_s, finish_call
from parley.store.agents import AgentRepository
from parley.store.calls import CallRepository
from parley.store.db import Database
from parley.store.lifecycle import CallStatus, Decision, InvalidStatusTransition
from parley.store.models import Call, PhoneNumber
from parley.store.numbers import NumberTaken, PhoneNumberRepository
from parley.store.tenants import TenantRepository
from parley.store.types import utcnow

log = structlog.get_logger("parley.platform.phone")

PHONE_TRANSPORT = "twilio"

TWILIO_STATUS: dict[str, CallStatus] = {
    "queued": CallStatus.QUEUED,
    "initiated": CallStatus.QUEUED,
    "ringing": CallStatus.RINGING,
    "in-progress": CallStatus.IN_PROGRESS,
    "answered": CallStatus.IN_PROGRESS,
    "completed": CallStatus.COMPLETED,
    "busy": CallStatus.BUSY,
    "no-answer": CallStatus.NO_ANSWER,
    "failed": CallStatus.FAILED,
    "canceled": CallStatus.CANCELED,
}
"""Twilio's ``CallStatus`` (and ``answered``, the event name of ``in-progress``) → Parley's."""

SERVER_UNAVAILABLE = "server_unavailable"
"""End reason of a call this server refused to connect (draining, or live sessions disabled): an inbound
call is rejected unanswered; an outbound call was already answered when Twilio asked, and is hung up."""

SERVER_SIDE_FAILURES = frozenset({INTERRUPTED, TRANSPORT_ERROR, SERVER_UNAVAILABLE})
"""End reasons of a ``failed`` call that failed on this server's side (it was killed; its media stream
dropped; it refused an answered outbound call), not on the carrier's line: Twilio's later ``completed`` is
a second witness of its end, and its ``CallDuration`` is billed. Any other failed call's ``completed``
contradicts its history."""


class UnknownNumber(LookupError):
    """An inbound call to a number no agent of any organization answers (or whose agent cannot run: its
    stored configuration no longer loads)."""


class NotAssigned(PermissionError):
    """A tenant asked for a number the operator has not assigned to it. The message is the same whether
    the number is free or another organization's: which numbers others hold is not a tenant's to learn."""

    def __init__(self, number: str) -> None:
        super().__init__(
            f"{number} is not one of the organization's numbers: numbers are assigned by the operator "
            "of this Parley server"
        )
        self.number = number


class CallMismatch(LookupError):
    """A carrier's request names a call Parley cannot connect it to (unknown, ended, another CallSid)."""


class UnknownStatus(ValueError):
    """A call status Twilio does not document."""


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    call: CallSummary | None
    """The call as it is now; None when no call is known by that CallSid."""
    status: CallStatus
    decision: Decision | None
    """What the lifecycle made of it; None when it refused the change (it contradicts the history).
    ``DUPLICATE`` for the carrier's end of a call that failed on this side (``SERVER_SIDE_FAILURES``)."""


@dataclass(frozen=True, slots=True)
class MachineVerdict:
    call: CallSummary
    machine: bool
    """A machine (or fax) answered, not a person."""
    agent: AgentConfig | None
    """The agent version the call runs (its ``telephony`` settings say what to do about a machine)."""
    repeated: bool
    """The call already had this verdict, or one that says the same (a redelivered callback, another
    wording): it was acted on when that came."""


def is_machine(answered_by: str) -> bool:
    """AMD's ``AnsweredBy``: ``machine_start``, ``machine_end_beep|silence|other`` and ``fax`` are not a
    person; ``human`` and ``unknown`` are treated as one (https://www.twilio.com/docs/voice/answering-machine-detection)."""
    return answered_by.startswith("machine_") or answered_by == "fax"


def number_out(row: PhoneNumber) -> PhoneNumberOut:
    return PhoneNumberOut(
        id=row.id, number=row.number, agent_id=row.agent_id, label=row.label, created_at=row.created_at
    )


class PhoneService:
    def __init__(self, db: Database, calls: CallService) -> None:
        self.db = db
        self.calls = calls

    # --- numbers ------------------------------------------------------------------------------------
    #
    # One Twilio account may carry every organization, and an inbound call goes to whoever holds the
    # ``To`` number: a number an organization could take for itself would take another's callers (and
    # let it show their number). So numbers are given by the operator (``assign_number``; ``add_number``
    # on the host, or the operator's own organization); a tenant only routes the numbers it was given
    # (``route_number``, ``update_number``), and is told the same about a free number as about another
    # organization's.

    async def add_number(self, org_id: str, number: str, agent_ref: str, label: str = "") -> PhoneNumberOut:
        """The operator's way in (``parley numbers add`` on the host; the API keys of the operator's own
        organization): ``number`` (E.164) becomes the organization's if no organization has it, or an
        unrouted number of the organization gets an agent. ``Conflict`` if another organization has it
        (not named: an API key is asking) or an agent already answers it."""
        return await self._route(org_id, number, agent_ref, label, claim=True)

    async def route_number(self, org_id: str, number: str, agent_ref: str, label: str = "") -> PhoneNumberOut:
        """A tenant's way in: an agent of the organization answers a number the operator assigned to it.
        ``NotAssigned`` for any other number, worded the same whether it is free or another
        organization's; ``Conflict`` if an agent already answers it (``update_number`` changes that)."""
        return await self._route(org_id, number, agent_ref, label, claim=False)

    async def _route(
        self, org_id: str, number: str, agent_ref: str, label: str, *, claim: bool
    ) -> PhoneNumberOut:
        async with self.db.session() as session:
            agent = await AgentRepository(session).by_ref(org_id, agent_ref)
            if agent is None:  # asked first: the answer must not depend on who holds the number
                raise NotFound(f"no agent {agent_ref!r}")
            numbers = PhoneNumberRepository(session)
            row = await numbers.by_number(number)
            if row is None and claim:
                try:
                    return number_out(await numbers.add(org_id, number, agent.id, label))
                except NumberTaken as exc:
                    raise Conflict(f"{number} was assigned meanwhile: try again") from exc
            if row is None or row.org_id != org_id:
                if claim:
                    raise Conflict(
                        f"{number} is assigned to another organization (on the host: parley numbers unassign)"
                    )
                raise NotAssigned(number)
            if row.agent_id is not None:
                hint = f"PATCH /v1/phone-numbers/{row.id} changes it"
                if claim:
                    hint += f"; on the host, parley numbers assign {number} --org ORG --agent OTHER"
                raise Conflict(f"{number} is already answered by agent {row.agent_id}: {hint}")
            row.agent_id = agent.id
            row.label = label or row.label
            await session.flush()
            return number_out(row)

    async def update_number(self, org_id: str, ref: str, change: PhoneNumberUpdate) -> PhoneNumberOut:
        """Change which agent answers one of the organization's numbers (by id or E.164), or its label.
        ``NotFound`` for a number that is not the organization's, as for any number nobody has."""
        async with self.db.session() as session:
            row = await PhoneNumberRepository(session).get(org_id, ref)
            if row is None:
                raise NotFound(f"no phone number {ref!r}")
            if "agent" in change.model_fields_set:
                row.agent_id = await self._agent_id(session, org_id, change.agent)
            if change.label is not None:
                row.label = change.label
            await session.flush()
            return number_out(row)

    async def numbers(self, org_id: str) -> list[PhoneNumberOut]:
        async with self.db.session() as session:
            return [number_out(row) for row in await PhoneNumberRepository(session).list(org_id)]

    async def remove_number(self, org_id: str, ref: str) -> None:
        """Give a number of the organization back: it stops answering, and only the operator can assign it
        again (its calls stay on the books)."""
        async with self.db.session() as session:
            repo = PhoneNumberRepository(session)
            row = await repo.get(org_id, ref)
            if row is None:
                raise NotFound(f"no phone number {ref!r}")
            await repo.remove(row)

    async def assign_number(
        self, org_id: str, number: str, agent_ref: str | None = None, label: str | None = None
    ) -> PhoneNumberOut:
        """The operator gives ``number`` (E.164) to an organization, optionally with the agent that answers
        it; assigning it again to the same organization changes the agent or label given. ``Conflict``
        naming the organization that has it (only the operator calls this), ``NotFound`` for an agent the
        organization does not have."""
        async with self.db.session() as session:
            numbers = PhoneNumberRepository(session)
            row = await numbers.by_number(number)
            if row is not None and row.org_id != org_id:
                owner = await TenantRepository(session).get_org(row.org_id)
                raise Conflict(
                    f"{number} is assigned to organization {owner.slug if owner else row.org_id!r}: "
                    f"parley numbers unassign {number} first"
                )
            agent_id = await self._agent_id(session, org_id, agent_ref)
            if row is None:
                try:
                    row = await numbers.add(org_id, number, agent_id, label or "")
                except NumberTaken as exc:
                    raise Conflict(f"{number} was assigned meanwhile: try again") from exc
                log.info("phone number assigned", number=number, org_id=org_id)
                return number_out(row)
            if agent_id is not None:
                row.agent_id = agent_id
            if label is not None:
                row.label = label
            await session.flush()
            return number_out(row)

    async def unassign_number(self, number: str) -> str:
        """The operator takes ``number`` back from whichever organization has it (its calls stay on the
        books); returns that organization's slug. ``NotFound`` when nobody has it."""
        async with self.db.session() as session:
            numbers = PhoneNumberRepository(session)
            row = await numbers.by_number(number)
            if row is None:
                raise NotFound(f"no organization has {number}")
            owner = await TenantRepository(session).get_org(row.org_id)
            await numbers.remove(row)
            log.info("phone number unassigned", number=number, org_id=row.org_id)
            return owner.slug if owner is not None else row.org_id

    @staticmethod
    async def _agent_id(session: AsyncSession, org_id: str, agent_ref: str | None) -> str | None:
        if agent_ref is None:
            return None
        agent = await AgentRepository(session).by_ref(org_id, agent_ref)
        if agent is None:
            raise NotFound(f"no agent {agent_ref!r}")
        return agent.id

    async def caller_id(self, org_id: str) -> str | None:
        """The organization's first number (the From of its outbound calls when none is configured)."""
        async with self.db.session() as session:
            row = await PhoneNumberRepository(session).first(org_id)
            return row.number if row is not None else None

    # --- calls --------------------------------------------------------------------------------------

    async def inbound(self, to: str, from_: str | None, call_sid: str) -> CallSummary:
        """The call ringing at ``to``: put on the books (inbound, ringing) for the organization owning the
        number, pinned to its agent's latest version. A repeated webhook for the same CallSid gets the
        same call. Raises ``UnknownNumber`` when nobody answers ``to``, or its agent's stored configuration
        no longer loads (no call is put on the books then)."""
        async with self.db.session() as session:
            existing = await CallRepository(session).by_provider_id(call_sid)
            if existing is not None:
                if existing.direction != "inbound":
                    raise CallMismatch(f"carrier call {call_sid} is already call {existing.id}")
                return await summarize(session, existing)
            row = await PhoneNumberRepository(session).by_number(to)
            org_id, agent_id = (row.org_id, row.agent_id) if row is not None else (None, None)
        if org_id is None or agent_id is None:
            raise UnknownNumber(f"no agent answers {to}")
        try:
            call, _config = await self.calls.create(
                org_id,
                direction="inbound",
                transport=PHONE_TRANSPORT,
                agent_ref=agent_id,
                from_number=from_ if from_ and len(from_) <= 32 else None,
                to_number=to,
                provider_call_id=call_sid,
            )
        except NotFound as exc:  # the number's agent was deleted
            raise UnknownNumber(f"the agent answering {to} no longer exists") from exc
        except BrokenAgent as exc:  # refused like an unknown number: the caller is not left on a 500
            raise UnknownNumber(f"the agent answering {to} cannot run: {exc}") from exc
        except IntegrityError:  # the same webhook, retried while the first was being answered
            async with self.db.session() as session:
                again = await CallRepository(session).by_provider_id(call_sid)
                if again is None:
                    raise
                return await summarize(session, again)
        _decision, ringing = await self.calls.set_status(call.id, CallStatus.RINGING)
        log.info("inbound call", call_id=call.id, call_sid=call_sid, org_id=org_id)
        return ringing

    async def answer_outbound(self, call_id: str, call_sid: str) -> CallSummary:
        """An outbound call placed for ``call_id`` was answered and Twilio asks what to do: bind its CallSid
        (the dialer may not have stored it yet) and return the call. ``CallMismatch`` when the call is
        unknown, not a phone call, already over, or bound to another CallSid."""
        async with self.db.session() as session:
            calls = CallRepository(session)
            call = await calls.get(call_id)
            if call is None or call.transport != PHONE_TRANSPORT or call.direction != "outbound":
                raise CallMismatch(f"no outbound phone call {call_id!r}")
            await self._bind(calls, call, call_sid)
            if CallStatus(call.status).terminal:
                raise CallMismatch(f"call {call_id} has ended ({call.status})")
            return await summarize(session, call)

    async def status(
        self,
        call_sid: str,
        twilio_status: str,
        at: datetime | None = None,
        *,
        call_id: str | None = None,
        duration_s: int | None = None,
        sip_code: int | None = None,
    ) -> StatusUpdate:
        """Apply a status callback stamped ``at``. ``call_id`` (from the callback URL) finds an outbound
        call whose CallSid was not stored yet. Never raises for a callback that contradicts the call's
        history: it is logged and refused (``decision`` None), and the carrier need not retry it."""
        status = TWILIO_STATUS.get(twilio_status)
        if status is None:
            raise UnknownStatus(f"unknown call status {twilio_status!r}")
        when = at or utcnow()
        async with self.db.session() as session:
            call = await self._find(CallRepository(session), call_sid, call_id)
            if call is None:
                log.info("status callback for an unknown call", call_sid=call_sid, status=twilio_status)
                return StatusUpdate(None, status, None)
            ident, current, ended_why = call.id, CallStatus(call.status), call.end_reason
        if (
            status is CallStatus.COMPLETED
            and current is CallStatus.FAILED
            and ended_why in SERVER_SIDE_FAILURES
        ):
            return await self._carrier_end_after_server_failure(ident, call_sid, when, duration_s, ended_why)
        reason = None
        if status is CallStatus.FAILED:
            reason = f"carrier_sip_{sip_code}" if sip_code else "carrier_failed"
        try:
            if status is CallStatus.COMPLETED and current in (CallStatus.QUEUED, CallStatus.RINGING):
                # Only an answered call completes: its "answered" callback is still on the way (and will
                # be a duplicate). It was answered CallDuration seconds before it ended.
                answered = when - timedelta(seconds=duration_s or 0)
                await self.calls.set_status(ident, CallStatus.IN_PROGRESS, at=answered)
            decision, summary = await self.calls.set_status(ident, status, reason=reason, at=when)
        except InvalidStatusTransition as exc:
            log.warning(
                "refused a status callback that contradicts the call's history",
                call_id=ident,
                call_sid=call_sid,
                status=twilio_status,
                error=str(exc),
            )
            return StatusUpdate(await self.phone_call(None, ident), status, None)
        if decision is Decision.STALE and status is CallStatus.RINGING:
            async with self.db.session() as session:
                await CallRepository(session).note_ringing(ident, when)
                refreshed = await CallRepository(session).get(ident)
                assert refreshed is not None
                summary = await summarize(session, refreshed)
        if status.terminal and duration_s is not None:
            summary = await self._bill_carrier_duration(ident, duration_s) or summary
        log.info(
            "call status", call_id=ident, call_sid=call_sid, status=twilio_status, decision=decision.value
        )
        return StatusUpdate(summary, status, decision)

    async def _carrier_end_after_server_failure(
        self, call_id: str, call_sid: str, at: datetime, duration_s: int | None, reason: str
    ) -> StatusUpdate:
        """Twilio's ``completed`` for a call that failed on this side: not a contradiction (this side
        failed, the line itself ended normally) but a second witness of the end. The record keeps how and
        when it failed here; the carrier's duration is billed, from the answer it implies when this side
        never saw one (see the module)."""
        summary = None
        if duration_s is not None:
            answered = at - timedelta(seconds=duration_s)
            summary = await self._bill_carrier_duration(call_id, duration_s, answered=answered)
        log.info(
            "carrier ended a call that failed on this side",
            call_id=call_id,
            call_sid=call_sid,
            end_reason=reason,
            carrier_ended_at=at.isoformat(),
            call_duration_s=duration_s,
            billed=summary is not None,
        )
        return StatusUpdate(
            summary or await self.phone_call(None, call_id), CallStatus.COMPLETED, Decision.DUPLICATE
        )

    async def _bill_carrier_duration(
        self, call_id: str, seconds: int, *, answered: datetime | None = None
    ) -> CallSummary | None:
        """An answered call that ended is billed for the seconds the carrier reported (``CallDuration``),
        whichever witness of the hang-up ended it on the books: its usage is priced again with them.
        ``answered`` (the carrier's, from a ``completed``) starts a call that ended on the books unanswered,
        never after its end. None when nothing changed (not answered, not ended, or that figure is
        already kept)."""
        async with self.db.session() as session:
            call = await CallRepository(session).get(call_id)
            if call is None or call.ended_at is None:
                return None
            if call.started_at is None:
                if answered is None:
                    return None
                call.started_at = min(answered, call.ended_at)
            elif carrier_duration_s(call) == seconds:
                return None  # a repeated callback
            call.metrics = {**(call.metrics or {}), CARRIER_DURATION: seconds}
            await finish_call(session, call, self.calls.pricing)
            log.info("telephony billed as the carrier reported it", call_id=call_id, call_duration_s=seconds)
            return await summarize(session, call)

    async def phone_call(self, org_id: str | None, call_id: str) -> CallSummary:
        """A phone call (of the organization, when given); ``NotFound`` for any other id."""
        async with self.db.session() as session:
            call = await CallRepository(session).get(call_id, org_id)
            if call is None or call.transport != PHONE_TRANSPORT:
                raise NotFound(f"no phone call {call_id!r}")
            return await summarize(session, call)

    async def stream_session(self, call_id: str, call_sid: str | None) -> str:
        """The session id a media stream for ``call_id`` may run; ``CallMismatch`` (saying why) for a call
        that is unknown, not a phone call, another carrier call's, or over."""
        async with self.db.session() as session:
            call = await CallRepository(session).get(call_id)
            if call is None:
                raise CallMismatch(f"no call {call_id!r}")
            if call.transport != PHONE_TRANSPORT:
                raise CallMismatch(f"call {call_id} is not a phone call (transport {call.transport})")
            if call_sid is not None and call.provider_call_id != call_sid:
                raise CallMismatch(f"call {call_id} is not carrier call {call_sid!r}")
            if call.ended_at is not None or CallStatus(call.status).terminal:
                raise CallMismatch(f"call {call_id} has ended ({call.status})")
            return call.session_id

    async def machine(
        self, call_sid: str, answered_by: str, *, call_id: str | None = None
    ) -> MachineVerdict | None:
        """Record answering-machine detection's verdict on the call; None for an unknown call.

        The first verdict decides (AMD gives one per call). A later one is ignored (logged, None) when
        the call has ended, as nothing is left to act on, or when it contradicts the first (a machine after
        a person, or a person after a machine). One that agrees with it (``human`` then ``unknown``, both a
        person) is recorded, ``repeated``: what it asks for was done when the first came."""
        async with self.db.session() as session:
            call = await self._find(CallRepository(session), call_sid, call_id)
            if call is None:
                log.info("AMD callback for an unknown call", call_sid=call_sid)
                return None
            known = call.answered_by
            ended = call.ended_at is not None or CallStatus(call.status).terminal
            if known != answered_by and (
                ended or (known is not None and is_machine(known) != is_machine(answered_by))
            ):
                log.warning(
                    "ignored a late answering machine detection verdict",
                    call_id=call.id,
                    call_sid=call_sid,
                    answered_by=answered_by,
                    kept=known,
                    status=call.status,
                    reason="the call has ended" if ended else "it contradicts the call's first verdict",
                )
                return None
            repeated = known is not None
            call.answered_by = answered_by
            call.updated_at = utcnow()
            agent = await agent_config_of(session, call)
            summary = await summarize(session, call)
        log.info(
            "answering machine detection", call_id=summary.id, answered_by=answered_by, repeated=repeated
        )
        return MachineVerdict(summary, is_machine(answered_by), agent, repeated)

    async def _find(self, calls: CallRepository, call_sid: str, call_id: str | None) -> Call | None:
        call = await calls.by_provider_id(call_sid)
        if call is not None or call_id is None:
            return call
        call = await calls.get(call_id)
        if call is None or call.transport != PHONE_TRANSPORT:
            return None
        try:
            await self._bind(calls, call, call_sid)
        except CallMismatch as exc:
            log.warning(
                "callback names a call of another CallSid", call_id=call_id, call_sid=call_sid, error=str(exc)
            )
            return None
        return call

    @staticmethod
    async def _bind(calls: CallRepository, call: Call, call_sid: str) -> None:
        if call.provider_call_id == call_sid:
            return
        if call.provider_call_id is not None:
            raise CallMismatch(f"call {call.id} is carrier call {call.provider_call_id}, not {call_sid}")
        if await calls.by_provider_id(call_sid) is not None:
            raise CallMismatch(f"carrier call {call_sid} belongs to another call")
        call.provider_call_id = call_sid
        call.updated_at = utcnow()
        await calls.session.flush()
