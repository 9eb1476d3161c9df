"""Coaching inside Twilio: a coach in a Twilio conference listens, whispers to the rep, or barges in.

Where every leg of a coached call stays inside Twilio, Twilio's conference mixer plays the part of Parley's
room mixer, and a room's modes become fields of the coach's Participant resource
(https://www.twilio.com/docs/voice/api/conference-participant-resource):

=======  =====  ========  ==============  ===================
mode     muted  coaching  callSidToCoach  who hears the coach
=======  =====  ========  ==============  ===================
listen   true   false     (none)          nobody
whisper  false  true      the rep's call  the rep only
barge    false  false     (none)          everyone
=======  =====  ========  ==============  ===================

The coach hears everyone in every mode. Requests go through the official library on ``TwilioRest``'s
client (its redirecting HTTP client reaches the local Twilio in tests) and off the event loop like every
other Twilio request (``TwilioRest._run``). Twilio's refusals keep their codes as typed errors: 20404 (no
such conference or participant), 16028 (the call to coach is not in the conference), 16027 (it is on hold).
Library paths: ``twilio/rest/api/v2010/account/conference/__init__.py`` and ``…/participant.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import structlog

from parley.telephony.rest import NOT_FOUND, TwilioRest, TwilioRestError

log = structlog.get_logger("parley.telephony")

T = TypeVar("T")

CoachMode = Literal["listen", "whisper", "barge"]
MODES: tuple[CoachMode, ...] = ("listen", "whisper", "barge")
COACHEE_ON_HOLD = 16027
COACHEE_ABSENT = 16028
_CONFERENCE_SID = re.compile(r"^CF[0-9a-fA-F]{32}$")


class ConferenceError(TwilioRestError):
    """Twilio refused a conference request; ``code`` is Twilio's."""


class ConferenceNotFound(ConferenceError):
    """20404: no live conference of that SID or name, or no such participant in it."""


class CoacheeUnavailable(ConferenceError):
    """16028 / 16027: the call to whisper to is not in the conference, or is on hold."""


class ModeError(ValueError):
    """A mode Parley cannot express in a conference (unknown, or whisper with no one to whisper to);
    raised before anything is sent."""


@dataclass(frozen=True, slots=True)
class ConferenceParticipant:
    """A participant as Twilio reports it, and the room mode those fields amount to."""

    conference_sid: str
    call_sid: str
    label: str | None
    status: str
    muted: bool
    hold: bool
    coaching: bool
    call_sid_to_coach: str | None

    @property
    def mode(self) -> CoachMode:
        if self.muted:
            return "listen"
        return "whisper" if self.coaching else "barge"


def mode_fields(mode: str, coach_call_sid: str | None) -> dict[str, Any]:
    """The Participant fields that put a coach in ``mode`` (the table above). ``mode`` may be a plain string
    or a ``parley.rooms.Mode`` (a ``StrEnum``); ``coach_call_sid`` is the call the coach whispers to."""
    if mode not in MODES:
        raise ModeError(f"a conference coach is in listen, whisper or barge, not {mode!r}")
    if mode == "listen":
        return {"muted": True, "coaching": False}
    if mode == "barge":
        return {"muted": False, "coaching": False}
    if not coach_call_sid:
        raise ModeError("whisper needs the CallSid of the call to whisper to")
    return {"muted": False, "coaching": True, "call_sid_to_coach": coach_call_sid}


class TwilioConferences:
    """Coach control over Twilio conferences. ``conference`` is a conference SID (``CF…``) or the friendly
    name the calls dialed (``<Dial><Conference>name</Conference></Dial>``)."""

    def __init__(self, rest: TwilioRest) -> None:
        self.rest = rest

    async def find(self, friendly_name: str) -> str | None:
        """The SID of the live (not completed) conference of that name, if there is one."""
        found = await self._request(
            "find a conference",
            lambda: self.rest.client.conferences.list(friendly_name=friendly_name, limit=20),
        )
        for conference in found:
            if conference.status != "completed":
                return str(conference.sid)
        return None

    async def resolve(self, conference: str) -> str:
        """A conference SID for a SID or a friendly name (20404 when no live conference has that name)."""
        if _CONFERENCE_SID.match(conference):
            return conference
        sid = await self.find(conference)
        if sid is None:
            raise ConferenceNotFound(NOT_FOUND, f"no live conference named {conference!r}", 404)
        return sid

    async def add_coach(
        self,
        conference: str,
        to: str,
        from_: str,
        coach_call_sid: str | None,
        mode: str = "listen",
        *,
        label: str | None = "coach",
        status_callback: str | None = None,
    ) -> ConferenceParticipant:
        """Dial the coach at ``to`` into the conference, in ``mode`` from the first moment it is connected
        (``coach_call_sid``: the rep's call, needed for whisper). No entry beep: nobody should notice a
        listening coach arrive. Twilio creates the conference if the name is new."""
        fields = mode_fields(mode, coach_call_sid)
        options: dict[str, Any] = {"from_": from_, "to": to, "beep": "false", **fields}
        if label is not None:
            options["label"] = label
        if status_callback is not None:
            options.update(
                status_callback=status_callback,
                status_callback_method="POST",
                status_callback_event=["initiated", "ringing", "answered", "completed"],
            )
        created = await self._request(
            "add a coach", lambda: self.rest.client.conferences(conference).participants.create(**options)
        )
        participant = _participant(created)
        log.info(
            "coach dialed into a conference",
            conference_sid=participant.conference_sid,
            call_sid=participant.call_sid,
            mode=participant.mode,
        )
        return participant

    async def set_mode(
        self, conference: str, participant_call_sid: str, mode: str, coach_call_sid: str | None = None
    ) -> ConferenceParticipant:
        """Switch a participant to listen, whisper (to ``coach_call_sid``) or barge, live."""
        fields = mode_fields(mode, coach_call_sid)
        sid = await self.resolve(conference)
        updated = await self._request(
            "change a coach's mode",
            lambda: self.rest.client.conferences(sid).participants(participant_call_sid).update(**fields),
        )
        participant = _participant(updated)
        log.info(
            "conference participant mode changed",
            conference_sid=sid,
            call_sid=participant_call_sid,
            mode=participant.mode,
        )
        return participant

    async def participant(self, conference: str, call_sid: str) -> ConferenceParticipant:
        """One participant, by CallSid (or the label it was added with)."""
        sid = await self.resolve(conference)
        fetched = await self._request(
            "fetch a participant", lambda: self.rest.client.conferences(sid).participants(call_sid).fetch()
        )
        return _participant(fetched)

    async def participants(self, conference: str) -> list[ConferenceParticipant]:
        """Everyone in the conference or on their way in."""
        sid = await self.resolve(conference)
        listed = await self._request(
            "list participants", lambda: self.rest.client.conferences(sid).participants.list(limit=250)
        )
        return [_participant(item) for item in listed]

    async def remove(self, conference: str, participant_call_sid: str) -> None:
        """Take a participant out of the conference (a coach dialed in by ``add_coach`` is hung up)."""
        sid = await self.resolve(conference)
        await self._request(
            "remove a participant",
            lambda: self.rest.client.conferences(sid).participants(participant_call_sid).delete(),
        )
        log.info("conference participant removed", conference_sid=sid, call_sid=participant_call_sid)

    async def end(self, conference: str) -> None:
        """End the conference for everyone in it."""
        sid = await self.resolve(conference)
        await self._request(
            "end a conference", lambda: self.rest.client.conferences(sid).update(status="completed")
        )
        log.info("conference ended", conference_sid=sid)

    async def _request(self, what: str, request: Callable[[], T]) -> T:
        try:
            return await self.rest._run(what, request)
        except TwilioRestError as exc:
            raise _typed(exc) from exc


def _typed(exc: TwilioRestError) -> ConferenceError:
    kind: type[ConferenceError] = ConferenceError
    if exc.code == NOT_FOUND:
        kind = ConferenceNotFound
    elif exc.code in (COACHEE_ABSENT, COACHEE_ON_HOLD):
        kind = CoacheeUnavailable
    return kind(exc.code, exc.message, exc.status)


def _participant(instance: Any) -> ConferenceParticipant:
    """From the library's ``ParticipantInstance`` (untyped) to Parley's record."""
    return ConferenceParticipant(
        conference_sid=str(instance.conference_sid),
        call_sid=str(instance.call_sid),
        label=instance.label,
        status=str(instance.status),
        muted=bool(instance.muted),
        hold=bool(instance.hold),
        coaching=bool(instance.coaching),
        call_sid_to_coach=instance.call_sid_to_coach,
    )
