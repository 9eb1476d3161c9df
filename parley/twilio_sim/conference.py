"""The local Twilio's conferences: rooms whose every leg stays inside Twilio, mixed as Twilio mixes them.

A conference comes to exist when a call runs ``<Dial><Conference>name</Conference></Dial>``
(https://www.twilio.com/docs/voice/twiml/conference) or when the Participants API adds someone to a name no
live conference has (https://www.twilio.com/docs/voice/api/conference-participant-resource#create-a-participant-
resource: the path takes a conference SID or its friendly name). A participant added through the API is an
outbound call to ``To`` (the scripted callee machinery of ``callee.py``: ringing, busy, no answer …) which,
once answered, joins the conference exactly as if its TwiML were that ``<Dial><Conference>``.

Who hears whom is the coaching rule of the Participant resource, nothing more (``audible``):
a participant with ``coaching=true`` and ``call_sid_to_coach=X`` is heard by X alone and hears everyone
(whisper); ``muted=true`` is heard by nobody (listen); anyone else is heard by all (barge); a participant on
``hold`` neither hears nor is heard. The mixer runs per conference at 8 kHz on a 20 ms clock, from the
moment the conference starts (two participants, one with ``startConferenceOnEnter``). Each participant says
its callee script's clips (``tone:HZ:SECONDS`` …) from the moment it joins, and what each one *heard* is kept
tick by tick (``SimParticipant.heard_audio``) so a test can measure which voice reached which ear.

Status callbacks of the conference (``statusCallback``/``statusCallbackEvent`` on the noun, or
``ConferenceStatusCallback``/``ConferenceStatusCallbackEvent`` on a participant create; the first participant
that names one sets it, as Twilio does) are signed like every webhook of the sim and sent in order:
``conference-start``, ``conference-end``, ``participant-join``, ``participant-leave``,
``participant-mute``/``-unmute``, ``participant-hold``/``-unhold``, ``participant-modify``.

REST (JSON shapes of ``twilio.rest.api.v2010.account.conference``): ``Conferences.json`` (list),
``Conferences/{Sid}.json`` (fetch; update ``Status=completed``), ``Conferences/{Sid}/Participants.json``
(list, create), ``Conferences/{Sid}/Participants/{CallSid or Label}.json`` (fetch, update ``Muted``, ``Hold``,
``Coaching``, ``CallSidToCoach``, ``EndConferenceOnExit``, ``BeepOnExit``; delete). Errors as Twilio numbers
them: 20404 not found, 16028 the participant to coach is not in the conference, 16027 it is on hold, 13240
a ``coach`` attribute naming no participant, 21201/21211/21212/21213 bad numbers, 20001 a bad parameter
(the sim takes only ``true``/``false`` for booleans, so a typo shows instead of reading as false).
Not simulated: hold music, announcements, recordings, ``speaker`` events.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Collection
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

import numpy as np
import structlog
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.datastructures import QueryParams

from parley.audio.frame import PCM16
from parley.audio.mixer import mix
from parley.twilio_sim.callee import SAMPLE_RATE
from parley.twilio_sim.resources import (
    API_VERSION,
    CALL_EVENTS,
    RestError,
    SimCall,
    Source,
    Webhook,
    dialed_numbers,
    list_page,
    new_sid,
    rfc2822,
    utcnow,
)
from parley.twilio_sim.twiml import BEEPS, CONFERENCE_EVENTS, ConferenceNoun, Dial, DialTarget

if TYPE_CHECKING:
    from parley.twilio_sim.rest_app import Form
    from parley.twilio_sim.server import TwilioSim

log = structlog.get_logger("parley.twilio_sim")

FRAME_S = 0.02
FRAME_SAMPLES = int(SAMPLE_RATE * FRAME_S)
"""One tick of a conference's mixer: 160 samples at 8 kHz."""
KEEP_HEARD_TICKS = 30_000
"""What a participant heard is kept for its last 10 minutes (bounded memory on a long-running sim)."""
BEEP_HZ = 1000.0
BEEP_TICKS = 10
"""The enter/exit beep: 200 ms of 1 kHz, heard by everyone but the one who joins."""
MAX_NAME_CHARS = 128
"""Longest conference friendly name Twilio accepts."""
_SILENCE: PCM16 = np.zeros(FRAME_SAMPLES, np.int16)
_EVENT_NAMES = {
    "start": ("conference-start",),
    "end": ("conference-end",),
    "join": ("participant-join",),
    "leave": ("participant-leave",),
    "mute": ("participant-mute", "participant-unmute"),
    "hold": ("participant-hold", "participant-unhold"),
    "modify": ("participant-modify",),
}
"""Which ``StatusCallbackEvent`` values each ``statusCallbackEvent`` name asks for."""
DEFAULT_EVENTS = frozenset({"start", "end"})
"""Asked for when a status callback is given with no events."""


def _beep() -> PCM16:
    t = np.arange(BEEP_TICKS * FRAME_SAMPLES) / SAMPLE_RATE
    return (np.sin(2 * np.pi * BEEP_HZ * t) * 6000).astype(np.int16)


def _flag(value: str | None, name: str) -> bool | None:
    if value is None or value == "":
        return None
    if value.lower() not in ("true", "false"):
        raise RestError(400, 20001, f"{name} must be true or false, got {value!r}")
    return value.lower() == "true"


def _text(value: bool) -> str:
    return "true" if value else "false"


def _not_found(path: str) -> RestError:
    return RestError(404, 20404, f"The requested resource {path} was not found")


class SimParticipant:
    """One call in a conference: its Participant resource fields, its voice, and what it heard."""

    def __init__(
        self,
        call: SimCall,
        conference: SimConference,
        *,
        label: str | None = None,
        muted: bool = False,
        coaching: bool = False,
        call_sid_to_coach: str | None = None,
        beep: str = "true",
        start_conference_on_enter: bool = True,
        end_conference_on_exit: bool = False,
    ) -> None:
        self.call = call
        self.conference = conference
        self.label = label
        self.muted = muted
        self.hold = False
        self.coaching = coaching
        self.call_sid_to_coach = call_sid_to_coach if coaching else None
        self.beep = beep
        self.start_conference_on_enter = start_conference_on_enter
        self.end_conference_on_exit = end_conference_on_exit
        self.date_created = utcnow()
        self.date_updated = self.date_created
        self.joined_tick: int | None = None
        self.left_tick: int | None = None
        self.left_how: str | None = None
        """Why it left: hung-up (the call ended or moved on), kicked, conference-ended, not-answered."""
        self.joined = asyncio.Event()
        """Set when its call is in the conference (``wait_joined``)."""
        self.gone = asyncio.Event()
        """Set when the conference lets it go (kicked, ended): its ``<Dial>`` returns."""
        self._voice: deque[PCM16] = deque()
        self._current: PCM16 = _SILENCE[:0]
        self._heard: deque[PCM16] = deque(maxlen=KEEP_HEARD_TICKS)
        self._heard_total = 0

    @property
    def sid(self) -> str:
        return self.call.sid

    @property
    def connected(self) -> bool:
        return self.joined_tick is not None and self.left_tick is None

    @property
    def status(self) -> str:
        """The Participant resource's status: queued, connecting, ringing, connected, complete, failed."""
        if self.left_how is not None:
            return "complete" if self.joined_tick is not None else "failed"
        if self.joined_tick is not None:
            return "connected"
        return {"queued": "queued", "ringing": "ringing", "in-progress": "connecting"}.get(
            self.call.status, "failed"
        )

    async def wait_joined(self, limit_s: float = 10.0) -> SimParticipant:
        """Until its call is in the conference (ringing and answering take the callee script's time)."""
        async with asyncio.timeout(limit_s):
            await self.joined.wait()
        return self

    # -- audio ---------------------------------------------------------------------------------------

    def say(self, pcm: PCM16) -> None:
        """Queue 8 kHz audio for this participant to say after what it is already saying."""
        if pcm.dtype != np.int16 or pcm.ndim != 1:
            raise ValueError(f"say needs 1-D int16 audio, got {pcm.dtype} with shape {pcm.shape}")
        self._voice.append(pcm)

    def next_frame(self) -> PCM16:
        """The next 20 ms of what this participant says (silence when it has nothing to say)."""
        if not len(self._current) and self._voice:
            self._current = self._voice.popleft()
        if not len(self._current):
            return _SILENCE
        frame, self._current = self._current[:FRAME_SAMPLES], self._current[FRAME_SAMPLES:]
        if len(frame) < FRAME_SAMPLES:
            frame = np.concatenate([frame, _SILENCE[: FRAME_SAMPLES - len(frame)]])
        return frame

    def hear(self, frame: PCM16) -> None:
        self._heard.append(frame)
        self._heard_total += 1

    def heard_audio(self, since_tick: int, until_tick: int) -> PCM16:
        """What reached this participant's ear over ticks ``[since_tick, until_tick)`` of its conference's
        clock (8 kHz; silence where it was not connected, or where the record no longer reaches)."""
        count = max(0, until_tick - since_tick)
        out = np.zeros(count * FRAME_SAMPLES, np.int16)
        if self.joined_tick is None or not count:
            return out
        first = self.joined_tick + self._heard_total - len(self._heard)
        lo, hi = max(since_tick, first), min(until_tick, first + len(self._heard))
        for offset, frame in enumerate(itertools.islice(self._heard, max(0, lo - first), max(0, hi - first))):
            at = (lo - since_tick + offset) * FRAME_SAMPLES
            out[at : at + FRAME_SAMPLES] = frame
        return out

    # -- shapes --------------------------------------------------------------------------------------

    @property
    def uri(self) -> str:
        return f"{self.conference.base_uri}/Participants/{self.sid}.json"

    def resource(self, *, created: bool = False) -> dict[str, Any]:
        """The Participant resource (``queue_time`` only in the answer to a create, as Twilio does)."""
        return {
            "account_sid": self.call.account_sid,
            "call_sid": self.sid,
            "label": self.label,
            "call_sid_to_coach": self.call_sid_to_coach,
            "coaching": self.coaching,
            "conference_sid": self.conference.sid,
            "date_created": rfc2822(self.date_created),
            "date_updated": rfc2822(self.date_updated),
            "end_conference_on_exit": self.end_conference_on_exit,
            "muted": self.muted,
            "hold": self.hold,
            "start_conference_on_enter": self.start_conference_on_enter,
            "status": self.status,
            "queue_time": "0" if created else None,
            "uri": self.uri,
        }

    def record(self) -> dict[str, Any]:
        return {
            **self.resource(),
            "joined_tick": self.joined_tick,
            "left_tick": self.left_tick,
            "left_how": self.left_how,
        }


def audible(speaker: SimParticipant, listener: SimParticipant) -> bool:
    """Whether ``listener`` hears ``speaker`` in a started conference: the whole mixing policy.

    ===================================  =====================
    speaker                              heard by
    ===================================  =====================
    ``coaching``, ``call_sid_to_coach``  that call only (whisper)
    ``muted``                            nobody (listen)
    neither                              everyone (barge)
    ``hold`` (either side)               nobody
    ===================================  =====================

    Nobody hears themselves; everyone not on hold hears whoever is audible to them.
    """
    if speaker is listener or speaker.muted or speaker.hold or listener.hold:
        return False
    if speaker.coaching:
        return listener.sid == speaker.call_sid_to_coach
    return True


class SimConference:
    """One conference: its resource fields, participants, mixer clock, and status callbacks.

    Tests read ``tick`` (20 ms ticks mixed so far), ``participant(call_sid)``, ``events`` (the
    ``StatusCallbackEvent`` of each callback sent) and ``webhooks``; they wait with ``wait_tick`` and
    ``wait_ended``.
    """

    def __init__(self, conferences: SimConferences, friendly_name: str) -> None:
        self._conferences = conferences
        self.sid = new_sid("CF")
        self.account_sid = conferences.sim.account_sid
        self.friendly_name = friendly_name
        self.status = "init"
        self.date_created = utcnow()
        self.date_updated = self.date_created
        self.reason_conference_ended: str | None = None
        self.call_sid_ending_conference: str | None = None
        self.participants: dict[str, SimParticipant] = {}
        """Everyone in it or on their way in (ringing), by CallSid."""
        self.former: list[SimParticipant] = []
        self.status_callback: str | None = None
        self.status_callback_method = "POST"
        self.callback_events: frozenset[str] = frozenset()
        self.webhooks: list[Webhook] = []
        self.tick = 0
        self.ended = asyncio.Event()
        self._ticked = asyncio.Event()
        self._sequence = 0
        self._tones: list[tuple[PCM16, str | None]] = []
        self._outbox: asyncio.Queue[tuple[str, str, dict[str, str]] | None] = asyncio.Queue()
        self._log = log.bind(conference_sid=self.sid)

    # -- for tests -----------------------------------------------------------------------------------

    @property
    def events(self) -> list[str]:
        """``StatusCallbackEvent`` of every conference callback sent, in order."""
        return [w.params["StatusCallbackEvent"] for w in self.webhooks]

    @property
    def connected(self) -> list[SimParticipant]:
        return [p for p in self.participants.values() if p.connected]

    def participant(self, call_sid: str) -> SimParticipant:
        """A participant, present or former, by CallSid."""
        found = self.participants.get(call_sid)
        if found is not None:
            return found
        for former in reversed(self.former):
            if former.sid == call_sid:
                return former
        raise KeyError(call_sid)

    async def wait_tick(self, tick: int, limit_s: float = 10.0) -> None:
        """Until the mixer has mixed ``tick`` ticks (a conference that ends first raises)."""
        async with asyncio.timeout(limit_s):
            while self.tick < tick:
                if self.status == "completed":
                    raise RuntimeError(f"conference {self.sid} ended at tick {self.tick}, before {tick}")
                await self._ticked.wait()

    async def wait_ended(self, limit_s: float = 10.0) -> None:
        """Until the conference has ended and every callback of it was delivered."""
        async with asyncio.timeout(limit_s):
            await self.ended.wait()

    # -- shapes --------------------------------------------------------------------------------------

    @property
    def base_uri(self) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}/Conferences/{self.sid}"

    def resource(self) -> dict[str, Any]:
        """The Conference resource as the REST API returns it."""
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "call_sid_ending_conference": self.call_sid_ending_conference,
            "date_created": rfc2822(self.date_created),
            "date_updated": rfc2822(self.date_updated),
            "friendly_name": self.friendly_name,
            "reason_conference_ended": self.reason_conference_ended,
            "region": "us1",
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {
                "participants": f"{self.base_uri}/Participants.json",
                "recordings": f"{self.base_uri}/Recordings.json",
            },
            "uri": f"{self.base_uri}.json",
        }

    def record(self) -> dict[str, Any]:
        return {
            **self.resource(),
            "tick": self.tick,
            "events": self.events,
            "participants": [p.record() for p in self.participants.values()],
            "former": [p.record() for p in self.former],
        }

    # -- state ---------------------------------------------------------------------------------------

    def adopt_callback(self, url: str | None, method: str, events: Collection[str]) -> None:
        """The first participant that names a status callback sets the conference's."""
        if url is None or self.status_callback is not None:
            return
        self.status_callback = url
        self.status_callback_method = "GET" if method.upper() == "GET" else "POST"
        self.callback_events = frozenset(events) & CONFERENCE_EVENTS or DEFAULT_EVENTS

    def connect(self, participant: SimParticipant) -> None:
        """The participant's call is in: it speaks its script, is mixed from the next tick, and may start
        the conference."""
        participant.joined_tick = self.tick
        participant.date_updated = utcnow()
        participant.joined.set()
        plan = participant.call.plan
        for clip in plan.clips if plan is not None else ():
            participant.say(clip)
        self._event("join", "participant-join", participant)
        if participant.beep in ("true", "onEnter"):
            self._tones.append((_beep(), participant.sid))
        live = self.connected
        if self.status == "init" and len(live) >= 2 and any(p.start_conference_on_enter for p in live):
            self.status = "in-progress"
            self.date_updated = utcnow()
            self._event("start", "conference-start")
        self._log.info("twilio_sim.conference_join", call_sid=participant.sid, label=participant.label)

    def disconnect(self, participant: SimParticipant, how: str, call_status: str | None = None) -> None:
        """The participant leaves (idempotent): the others hear the exit beep, and the conference ends if it
        was its last participant or one that ends it on exit. ``call_status``: its call's status, when that
        is what made it leave (busy, no-answer …)."""
        if self.participants.get(participant.sid) is not participant:
            return
        del self.participants[participant.sid]
        self.former.append(participant)
        participant.left_how = participant.left_how or how
        was_connected = participant.joined_tick is not None
        if was_connected:
            participant.left_tick = self.tick
        participant.date_updated = utcnow()
        if call_status is None:
            ended = participant.call.stop_requested is not None or how == "hung-up"
            call_status = "completed" if ended else participant.call.status
        self._event("leave", "participant-leave", participant, {"ParticipantCallStatus": call_status})
        participant.gone.set()
        if was_connected and participant.beep in ("true", "onExit"):
            self._tones.append((_beep(), None))
        self._log.info("twilio_sim.conference_leave", call_sid=participant.sid, how=how)
        if self.status == "completed":
            return
        kicked = how == "kicked"
        if participant.end_conference_on_exit and was_connected:
            verb = "kicked" if kicked else "left"
            self.end(f"participant-with-end-conference-on-exit-{verb}", participant.sid)
        elif not self.participants:
            self.end("last-participant-kicked" if kicked else "last-participant-left", participant.sid)

    def end(self, reason: str, call_sid: str | None = None) -> None:
        """The conference is over: everyone in it is let go (their calls go on with their next TwiML),
        everyone still ringing is hung up."""
        if self.status == "completed":
            return
        self.status = "completed"
        self.reason_conference_ended = reason
        self.call_sid_ending_conference = call_sid
        self.date_updated = utcnow()
        for participant in list(self.participants.values()):
            if participant.joined_tick is None:
                participant.call.request_stop("api")
            self.disconnect(participant, "conference-ended")
        self._event(
            "end",
            "conference-end",
            extra={"ReasonConferenceEnded": reason}
            | ({"CallSidEndingConference": call_sid} if call_sid else {}),
        )
        self._outbox.put_nowait(None)  # the deliverer stops after the last callback
        self._conferences.closed(self)
        self._wake()
        self._log.info("twilio_sim.conference_end", reason=reason)

    def check_coachee(self, call_sid: str, coach_sid: str | None = None) -> None:
        """A coach may only whisper to a participant connected to this conference and not on hold."""
        target = self.participants.get(call_sid)
        if target is None or not target.connected or call_sid == coach_sid:
            raise RestError(400, 16028, "Participant to be whispered is not present in the conference")
        if target.hold:
            raise RestError(400, 16027, "Participant to be whispered is on hold")

    # -- the mixer -----------------------------------------------------------------------------------

    async def run_mixer(self) -> None:
        """Tick every 20 ms on the monotonic clock until the conference ends; a late tick is caught up at
        once (the audio is synthetic, so only the order of ticks and REST changes matters)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        while self.status != "completed":
            delay = start + (self.tick + 1) * FRAME_S - loop.time()
            await asyncio.sleep(max(delay, 0.0))
            if self.status != "completed":
                self.mix_tick()

    def mix_tick(self) -> None:
        """One tick: each connected participant hears the mix of everyone audible to it (and any beep)."""
        live = self.connected
        said = {p.sid: p.next_frame() for p in live}
        tones = [(pcm[:FRAME_SAMPLES], exclude) for pcm, exclude in self._tones]
        self._tones = [
            (pcm[FRAME_SAMPLES:], exclude) for pcm, exclude in self._tones if len(pcm) > FRAME_SAMPLES
        ]
        mixing = self.status == "in-progress"
        for listener in live:
            if not mixing or listener.hold:
                listener.hear(_SILENCE)
                continue
            voices = [said[speaker.sid] for speaker in live if audible(speaker, listener)]
            voices += [tone for tone, exclude in tones if exclude != listener.sid]
            listener.hear(mix(voices, FRAME_SAMPLES) if voices else _SILENCE)
        self.tick += 1
        self._wake()

    def _wake(self) -> None:
        ticked, self._ticked = self._ticked, asyncio.Event()
        ticked.set()

    # -- status callbacks ----------------------------------------------------------------------------

    def _event(
        self,
        kind: str,
        name: str,
        participant: SimParticipant | None = None,
        extra: dict[str, str] | None = None,
    ) -> None:
        """Queue one status callback if the conference asked for ``kind`` events."""
        if self.status_callback is None or kind not in self.callback_events:
            return
        self._sequence += 1
        params = {
            "AccountSid": self.account_sid,
            "ConferenceSid": self.sid,
            "FriendlyName": self.friendly_name,
            "SequenceNumber": str(self._sequence),
            "StatusCallbackEvent": name,
            "Timestamp": rfc2822(utcnow()) or "",
        }
        if participant is not None:
            params |= {
                "CallSid": participant.sid,
                "Coaching": _text(participant.coaching),
                "EndConferenceOnExit": _text(participant.end_conference_on_exit),
                "Hold": _text(participant.hold),
                "Muted": _text(participant.muted),
                "StartConferenceOnEnter": _text(participant.start_conference_on_enter),
            }
            if participant.call_sid_to_coach is not None:
                params["CallSidToCoach"] = participant.call_sid_to_coach
            if participant.label is not None:
                params["ParticipantLabel"] = participant.label
        params |= extra or {}
        self._outbox.put_nowait((self.status_callback, self.status_callback_method, params))

    async def deliver(self) -> None:
        """Send the queued callbacks one at a time, in order, until the conference-end one."""
        sim = self._conferences.sim
        try:
            while (item := await self._outbox.get()) is not None:
                url, method, params = item
                await sim._send(self.webhooks, "conference", url, method, params)
        finally:
            self.ended.set()

    def changed(self, participant: SimParticipant, before: tuple[bool, bool, bool, str | None]) -> None:
        """Callbacks for what an update changed: mute, hold, coaching (``participant-modify``)."""
        muted, hold, coaching, coachee = before
        if participant.joined_tick is None:
            return
        if participant.muted != muted:
            self._event(
                "mute", "participant-mute" if participant.muted else "participant-unmute", participant
            )
        if participant.hold != hold:
            self._event("hold", "participant-hold" if participant.hold else "participant-unhold", participant)
        if (participant.coaching, participant.call_sid_to_coach) != (coaching, coachee):
            self._event("modify", "participant-modify", participant)


class SimConferences:
    """Every conference of the account, the REST operations on them, and ``<Dial><Conference>``."""

    def __init__(self, sim: TwilioSim) -> None:
        self.sim = sim
        self.by_sid: dict[str, SimConference] = {}
        self._live: dict[str, SimConference] = {}
        """Conferences not yet completed, by friendly name (a name is reused once its conference ends)."""
        self._pending: dict[str, SimParticipant] = {}
        """Participants added through the API whose call has not joined yet, by CallSid."""

    def named(self, name: str) -> SimConference | None:
        """The live conference of that friendly name, if any."""
        return self._live.get(name)

    def find(self, sid: str, path: str) -> SimConference:
        conference = self.by_sid.get(sid)
        if conference is None:
            raise _not_found(path)
        return conference

    def closed(self, conference: SimConference) -> None:
        if self._live.get(conference.friendly_name) is conference:
            del self._live[conference.friendly_name]

    def _open(self, name: str) -> SimConference:
        conference = SimConference(self, name)
        self.by_sid[conference.sid] = conference
        self._live[name] = conference
        self.sim._track(
            asyncio.create_task(conference.run_mixer(), name=f"twilio-sim-mixer-{conference.sid}")
        )
        self.sim._track(asyncio.create_task(conference.deliver(), name=f"twilio-sim-confcb-{conference.sid}"))
        log.info("twilio_sim.conference_created", conference_sid=conference.sid)
        return conference

    # -- TwiML ---------------------------------------------------------------------------------------

    async def join(self, call: SimCall, verb: Dial, target: DialTarget) -> Source | None:
        """``<Dial><Conference>``: the call stays in the conference until it is let go (kicked, the
        conference ends) or interrupted (hang-up, redirect); then it goes on to ``action`` or the next
        verb."""
        noun = target.conference or ConferenceNoun()
        participant = self._pending.pop(call.sid, None)
        if participant is not None and participant.conference.status == "completed":
            return None  # added through the API to a conference that ended while it rang
        if participant is None:
            if len(target.address) > MAX_NAME_CHARS:
                call.errors.append(f"12200 conference name longer than {MAX_NAME_CHARS} characters")
                return None
            existing = self.named(target.address)
            if noun.coach is not None:
                try:
                    if existing is None:
                        raise RestError(400, 16028, "no conference, so nobody to coach")
                    existing.check_coachee(noun.coach, call.sid)
                except RestError:
                    call.errors.append(f"13240 Dial->Conference: Invalid Whisper SID {noun.coach}")
                    log.warning("twilio_sim.bad_coach", call_sid=call.sid, coach=noun.coach)
                    return None
            conference = existing or self._open(target.address)
            participant = SimParticipant(
                call,
                conference,
                label=noun.participant_label,
                muted=noun.muted,
                coaching=noun.coach is not None,
                call_sid_to_coach=noun.coach,
                beep=noun.beep,
                start_conference_on_enter=noun.start_conference_on_enter,
                end_conference_on_exit=noun.end_conference_on_exit,
            )
            conference.participants[call.sid] = participant
        conference = participant.conference
        conference.adopt_callback(
            noun.status_callback, noun.status_callback_method, noun.status_callback_events
        )
        conference.connect(participant)
        try:
            await participant.gone.wait()
        finally:
            conference.disconnect(participant, "hung-up")
        if verb.action is not None:
            return Source("action", url=verb.action, method=verb.method)
        return None

    # -- REST ----------------------------------------------------------------------------------------

    def create_participant(self, key: str, form: Form, path: str) -> SimParticipant:
        """``POST Conferences/{Sid or FriendlyName}/Participants.json``: dial ``To``; once answered it joins.
        A name no live conference has opens a new one (status ``init``)."""
        conference = self.by_sid.get(key) if key.startswith("CF") else self.named(key)
        if key.startswith("CF") and (conference is None or conference.status == "completed"):
            raise _not_found(path)
        if conference is None and len(key) > MAX_NAME_CHARS:
            raise RestError(400, 20001, f"conference name longer than {MAX_NAME_CHARS} characters")
        to, from_ = dialed_numbers(form)
        coachee = form.one("CallSidToCoach") or None
        coaching = _flag(form.one("Coaching"), "Coaching")
        if coaching is None:
            coaching = coachee is not None  # "defaults to false unless call_sid_to_coach is defined"
        if coaching and coachee is None:
            raise RestError(400, 20001, "CallSidToCoach is required when Coaching is true")
        if coaching:
            if conference is None:
                raise RestError(400, 16028, "Participant to be whispered is not present in the conference")
            conference.check_coachee(coachee or "")
        beep = form.one("Beep") or "true"
        if beep not in BEEPS:
            raise RestError(400, 20001, f"Beep must be true, false, onEnter or onExit, got {beep!r}")
        label = form.one("Label") or None
        taken = conference.participants.values() if conference is not None else ()
        if label is not None and any(p.label == label for p in taken):
            raise RestError(400, 20001, f"A participant labelled {label!r} is already in the conference")
        muted = _flag(form.one("Muted"), "Muted") or False
        start_on_enter = _flag(form.one("StartConferenceOnEnter"), "StartConferenceOnEnter")
        end_on_exit = _flag(form.one("EndConferenceOnExit"), "EndConferenceOnExit") or False
        events = {event for value in form.many("StatusCallbackEvent") for event in value.split()}
        conference = conference or self._open(key)
        call = SimCall(
            account_sid=self.sim.account_sid,
            to=to,
            from_=from_,
            direction="outbound-api",
            source=Source("voice", twiml=_join_twiml(conference.friendly_name)),
            status="queued",
            status_callback=form.one("StatusCallback") or None,
            status_callback_method="GET"
            if (form.one("StatusCallbackMethod") or "").upper() == "GET"
            else "POST",
            events=frozenset(events & CALL_EVENTS) if events else frozenset({"completed"}),
            timeout_s=form.integer("Timeout", 60, 5, 600),
            time_limit_s=form.integer("TimeLimit", 14_400, 1, 86_400),
        )
        call.plan = self.sim.callees.next_call(to)
        participant = SimParticipant(
            call,
            conference,
            label=label,
            muted=muted,
            coaching=coaching,
            call_sid_to_coach=coachee,
            beep=beep,
            start_conference_on_enter=True if start_on_enter is None else start_on_enter,
            end_conference_on_exit=end_on_exit,
        )
        conference.participants[call.sid] = participant
        self._pending[call.sid] = participant
        conference_events = {
            event for value in form.many("ConferenceStatusCallbackEvent") for event in value.split()
        }
        conference.adopt_callback(
            form.one("ConferenceStatusCallback") or None,
            form.one("ConferenceStatusCallbackMethod") or "POST",
            conference_events,
        )
        self.sim.calls[call.sid] = call
        self.sim._start(call, self._dial_participant(call, participant))
        log.info("twilio_sim.participant_dialed", conference_sid=conference.sid, call_sid=call.sid, to=to)
        return participant

    async def _dial_participant(self, call: SimCall, participant: SimParticipant) -> str:
        """The participant's call: ring ``To`` as any outbound call; its inline TwiML joins the conference.
        A call never answered leaves the conference it was on its way into."""
        assert call.plan is not None
        status = "canceled"
        try:
            status = await self.sim._outbound(call, call.plan)
            return status
        finally:
            if self._pending.pop(call.sid, None) is not None:
                participant.conference.disconnect(participant, "not-answered", status)

    def find_participant(self, conference: SimConference, key: str, path: str) -> SimParticipant:
        """By CallSid, or by the label given when it was added."""
        found = conference.participants.get(key)
        if found is None:
            found = next((p for p in conference.participants.values() if p.label == key), None)
        if found is None:
            raise _not_found(path)
        return found

    def update_participant(self, participant: SimParticipant, form: Form) -> None:
        """``POST …/Participants/{CallSid}.json``: mute, hold, coaching, and who is coached."""
        muted = _flag(form.one("Muted"), "Muted")
        hold = _flag(form.one("Hold"), "Hold")
        coaching = _flag(form.one("Coaching"), "Coaching")
        coachee = form.one("CallSidToCoach") or None
        end_on_exit = _flag(form.one("EndConferenceOnExit"), "EndConferenceOnExit")
        beep_on_exit = _flag(form.one("BeepOnExit"), "BeepOnExit")
        will_coach = coaching if coaching is not None else (coachee is not None or participant.coaching)
        target = (coachee or participant.call_sid_to_coach) if will_coach else None
        if will_coach and target is None:
            raise RestError(400, 20001, "CallSidToCoach is required when Coaching is true")
        conference = participant.conference
        if target is not None and (target != participant.call_sid_to_coach or not participant.coaching):
            conference.check_coachee(target, participant.sid)
        before = (participant.muted, participant.hold, participant.coaching, participant.call_sid_to_coach)
        if muted is not None:
            participant.muted = muted
        if hold is not None:
            participant.hold = hold
        participant.coaching, participant.call_sid_to_coach = will_coach, target
        if end_on_exit is not None:
            participant.end_conference_on_exit = end_on_exit
        if beep_on_exit is not None:
            participant.beep = "onExit" if beep_on_exit else "false"
        participant.date_updated = utcnow()
        conference.changed(participant, before)

    def remove_participant(self, participant: SimParticipant) -> None:
        """``DELETE …/Participants/{CallSid}.json``: kicked; a call still ringing is hung up."""
        if participant.joined_tick is None:
            self._pending.pop(participant.sid, None)
            participant.call.request_stop("api")
        participant.conference.disconnect(participant, "kicked")

    def update_conference(self, conference: SimConference, form: Form) -> None:
        """``POST Conferences/{Sid}.json``: ``Status=completed`` ends it."""
        status = form.one("Status")
        if status is None or status == "":
            return
        if status != "completed":
            raise RestError(400, 20001, f"Status must be completed, got {status!r}")
        conference.end("conference-ended-via-api")


def _join_twiml(name: str) -> str:
    """What a participant added through the API runs once answered: its conference, nothing after."""
    return f"<Response><Dial><Conference>{escape(name)}</Conference></Dial></Response>"


def register_routes(app: FastAPI, sim: TwilioSim) -> None:
    """The Conference and Participant REST paths, and ``GET /sim/conferences`` for inspection."""
    # the server imports this module: bind at call time
    from parley.twilio_sim.rest_app import Form, fetch_and_update, newest_first

    conferences = sim.conferences
    prefix = f"/{API_VERSION}/Accounts/{{account}}/Conferences"

    def conference_in_path(request: Request) -> SimConference:
        return conferences.find(request.path_params["sid"], request.url.path)

    def participant_in_path(request: Request) -> SimParticipant:
        conference = conference_in_path(request)
        return conferences.find_participant(conference, request.path_params["call"], request.url.path)

    def conference_wanted(conference: SimConference, query: QueryParams) -> bool:
        return (not query.get("FriendlyName") or conference.friendly_name == query["FriendlyName"]) and (
            not query.get("Status") or conference.status == query["Status"]
        )

    newest_first(
        app, sim, prefix + ".json", "conferences", lambda: conferences.by_sid.values(), conference_wanted
    )

    fetch_and_update(app, sim, prefix + "/{sid}.json", conference_in_path, conferences.update_conference)

    @app.get(prefix + "/{sid}/Participants.json")
    async def list_participants(account: str, request: Request) -> JSONResponse:
        sim.authenticate(request, account)
        conference = conference_in_path(request)
        query = request.query_params
        wanted = {
            name: _flag(query.get(param), param)
            for name, param in (("muted", "Muted"), ("hold", "Hold"), ("coaching", "Coaching"))
        }
        items = [
            participant.resource()
            for participant in conference.participants.values()
            if all(value is None or getattr(participant, name) == value for name, value in wanted.items())
        ]
        return JSONResponse(list_page("participants", items, request.url.path))

    @app.post(prefix + "/{sid}/Participants.json")
    async def create_participant(account: str, sid: str, request: Request) -> JSONResponse:
        sim.authenticate(request, account)
        participant = conferences.create_participant(sid, Form(await request.body()), request.url.path)
        return JSONResponse(participant.resource(created=True), status_code=201)

    path = prefix + "/{sid}/Participants/{call}.json"
    fetch_and_update(app, sim, path, participant_in_path, conferences.update_participant)

    @app.delete(path)
    async def delete_participant(account: str, request: Request) -> Response:
        sim.authenticate(request, account)
        conferences.remove_participant(participant_in_path(request))
        return Response(status_code=204)

    @app.get("/sim/conferences")
    async def sim_conferences() -> JSONResponse:
        return JSONResponse({"conferences": [c.record() for c in conferences.by_sid.values()]})
