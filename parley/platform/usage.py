"""What a call used — ASR seconds, LLM tokens, TTS characters, speech-to-speech minutes, telephony minutes —
read off its timeline.

Usage is recomputed from the stored events whenever a call ends, so it is exact however often events
were delivered. LLM tokens count every reply the model produced, including speculative ones that were
dropped unheard: they were paid for all the same. TTS characters count the clauses the voice said: not
one it failed on, nor those after it that were never sent to it.

Telephony is billed as the carrier bills it: each started minute of the time Twilio reports in the
completed call's ``CallDuration`` (kept as ``metrics.carrier_duration_s``), else of the call's own
duration; an answered call is at least one minute (Twilio rounds a sub-second call up).

Work a fallback provider did (``provider.failover`` naming the reply, and the voice's clause, whose
request hopped; or the hearing of the caller's turn, ``recognition``, whose stream hopped) is its own
line, priced at that provider and model: ``tts_characters.fallbacks.0`` is what the voice's first
fallback said, ``asr_seconds.fallbacks.0`` what the recogniser's first fallback heard
(``pricing.fallback_kind``). A coached room's legs are priced at the agent's recogniser.

A coached room's phone legs (the calls Parley dialed through Twilio to bring people in, kept in the
room call's ``metadata.phone_legs``) are its telephony: each answered leg is billed as an outbound phone
call is, for the started minutes of the ``CallDuration`` Twilio reported when it ended, and the legs'
minutes are the room call's one ``telephony_minutes`` line (``phone_leg_lines``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from parley.config import get_settings
from parley.engine.agent import AgentConfig
from parley.engine.event_payloads import (
    AgentReplyDone,
    AgentText,
    Error,
    LlmCompleted,
    LlmRequest,
    ProviderFailover,
    RoomUtterance,
    SessionStarted,
    TranscriptFinal,
    payload_or_none,
)
from parley.engine.events import EventType as E
from parley.engine.language import AUTO, recognizer_settings, voice_settings
from parley.platform.pricing import PricedLine, Pricing, fallback_kind, meter, money, table_price
from parley.platform.schemas import CostBreakdown, CostLine
from parley.store.agents import AgentRepository
from parley.store.billing import BillingRepository
from parley.store.calls import CallRepository
from parley.store.models import AgentVersion, Call, UsageLine
from parley.store.types import utcnow
from parley.timeline.digest import Record, latency_summary

TELEPHONY_TRANSPORTS = frozenset({"twilio", "telephony", "sip", "phone"})
CARRIER_DURATION = "carrier_duration_s"
"""The key in a call's ``metrics`` of the seconds the carrier reported for it (Twilio's ``CallDuration``)."""
ROOM_TRANSPORT = "room"
"""The transport of a coached room's call (its legs are browsers and phones)."""
PHONE_LEGS = "phone_legs"
"""The key in a coached room call's ``metadata`` of its phone legs: one object per call Parley dialed
into the room (``call_sid``, ``participant_id``, ``role``, ``to``, ``from``, ``status``, ``duration_s``)."""
PHONE_LEG_CARRIER = ("twilio", "outbound")
"""The transport and direction a room's phone legs are priced as: Parley dials each through Twilio."""
ANSWERED = "completed"
"""Twilio's final status of a call that was answered (busy, no-answer, failed and canceled were not)."""


def measure(
    records: Iterable[Record], *, transport: str, duration_s: float | None, billed_s: int | None = None
) -> dict[str, float]:
    """Quantities per metered kind (kinds that were not used are left out). ``duration_s`` is None for a
    call nobody answered; ``billed_s`` is the carrier's own figure for an answered phone call, if known.

    A speech-to-speech call (``session.started`` names its ``engine``) is metered by its length, and its
    model's audio tokens apart from its text tokens (a Realtime ``input_tokens`` counts both). A coached
    room's recognition is its legs' utterances (``room.utterance``). Clauses the voice said, model
    rounds and spoken turns a fallback served are that fallback's kinds (see the module)."""
    asr = 0.0
    speech_to_speech = False
    spoken: list[tuple[int, float]] = []
    """Each spoken turn's hearing (``recognition``) and seconds, for those that name their hearing."""
    heard_by: dict[int, int] = {}
    """A hearing whose stream hopped, and the fallback its last hop went to."""
    clauses: list[tuple[str, int | None, int]] = []
    """Each clause announced (``agent.text``): its reply, position and characters."""
    voiced_by: dict[tuple[str, int], int] = {}
    """A clause whose request hopped, and the fallback its last hop went to."""
    tokens: dict[str, tuple[int, int, int, int]] = {}
    asking: dict[str, int | None] = {}
    """Per reply, the fallback its model round in progress went to (None: the primary)."""
    rounds: dict[str, list[tuple[int | None, int, int]]] = {}
    """Per reply, each finished round's fallback and the reply's running token totals after it."""
    for r in records:
        if r.type == E.SESSION_STARTED:
            started = payload_or_none(r, SessionStarted)
            speech_to_speech = speech_to_speech or bool(started is not None and started.engine)
        elif r.type == E.TRANSCRIPT_FINAL:
            final = payload_or_none(r, TranscriptFinal)
            if final is not None and final.recognition is not None:
                spoken.append((final.recognition, final.audio_seconds or 0.0))
            else:
                asr += (final.audio_seconds or 0.0) if final is not None else 0.0
        elif r.type == E.ROOM_UTTERANCE:  # each leg of a coached room is transcribed
            heard = payload_or_none(r, RoomUtterance)
            asr += (heard.audio_seconds or 0.0) if heard is not None else 0.0
        elif r.type == E.AGENT_TEXT:
            said = payload_or_none(r, AgentText)
            if said is not None:
                clauses.append((said.reply_id, said.segment, len(said.text)))
        elif r.type == E.ERROR:
            error = payload_or_none(r, Error)
            unsaid = error.unsaid if error is not None else None
            if unsaid is not None:  # the voice failed: that clause and the rest announced were not said
                reply, first = unsaid
                clauses = [c for c in clauses if c[0] != reply or c[1] is None or c[1] < first]
        elif r.type == E.PROVIDER_FAILOVER:
            hop = payload_or_none(r, ProviderFailover)
            if hop is not None and hop.role == "asr" and hop.recognition is not None:
                if hop.fallback is not None:
                    heard_by[hop.recognition] = hop.fallback
            elif hop is not None and hop.reply_id is not None and hop.fallback is not None:
                if hop.role == "tts" and hop.segment is not None:
                    voiced_by[(hop.reply_id, hop.segment)] = hop.fallback
                elif hop.role == "llm":
                    asking[hop.reply_id] = hop.fallback
        elif r.type == E.LLM_REQUEST:
            request = payload_or_none(r, LlmRequest)
            if request is not None:  # each round asks the chain anew, from its primary
                asking[request.reply_id] = None
        elif r.type == E.LLM_COMPLETED:
            llm = payload_or_none(r, LlmCompleted)
            if llm is not None:
                counts = (
                    llm.input_tokens,
                    llm.output_tokens,
                    llm.input_audio_tokens,
                    llm.output_audio_tokens,
                )
                _add_tokens(tokens, llm.reply_id, counts)
                rounds.setdefault(llm.reply_id, []).append(
                    (asking.get(llm.reply_id), llm.input_tokens, llm.output_tokens)
                )
        elif r.type == E.AGENT_REPLY_DONE:
            done = payload_or_none(r, AgentReplyDone)
            if done is not None:
                _add_tokens(tokens, done.reply_id, (done.input_tokens, done.output_tokens, 0, 0))
    recognized: dict[int, float] = {}
    """Seconds each of the recogniser's fallbacks heard."""
    for recognition, seconds in spoken:
        ear = heard_by.get(recognition)
        if ear is None:
            asr += seconds
        else:
            recognized[ear] = recognized.get(ear, 0.0) + seconds
    audio_in = sum(t[2] for t in tokens.values())
    audio_out = sum(t[3] for t in tokens.values())
    served = _served_by_fallbacks(rounds)
    usage = {
        "asr_seconds": round(asr, 3),
        "llm_input_tokens": float(sum(t[0] for t in tokens.values()) - audio_in - sum(served[0].values())),
        "llm_output_tokens": float(sum(t[1] for t in tokens.values()) - audio_out - sum(served[1].values())),
        "llm_audio_input_tokens": float(audio_in),
        "llm_audio_output_tokens": float(audio_out),
    }
    for fallback, seconds in sorted(recognized.items()):
        usage[fallback_kind("asr_seconds", fallback)] = round(seconds, 3)
    for fallback in sorted(served[0].keys() | served[1].keys()):
        usage[fallback_kind("llm_input_tokens", fallback)] = float(served[0].get(fallback, 0))
        usage[fallback_kind("llm_output_tokens", fallback)] = float(served[1].get(fallback, 0))
    if not speech_to_speech:  # a speech-to-speech engine's voice is in its price
        usage["tts_characters"] = 0.0
        for reply, segment, chars in clauses:
            voice = voiced_by.get((reply, segment)) if segment is not None else None
            kind = "tts_characters" if voice is None else fallback_kind("tts_characters", voice)
            usage[kind] = usage.get(kind, 0.0) + chars
    if speech_to_speech and duration_s:
        usage["speech_to_speech_seconds"] = round(duration_s, 3)
    if transport in TELEPHONY_TRANSPORTS and duration_s is not None:  # answered: the carrier bills it
        seconds = duration_s if billed_s is None else billed_s
        usage["telephony_minutes"] = float(max(1, math.ceil(seconds / 60)))  # carriers bill started minutes
    return {kind: quantity for kind, quantity in usage.items() if quantity > 0}


def _served_by_fallbacks(
    rounds: dict[str, list[tuple[int | None, int, int]]],
) -> tuple[dict[int, int], dict[int, int]]:
    """Input and output tokens per fallback: what each round a fallback served added to its reply's
    running totals."""
    inputs: dict[int, int] = {}
    outputs: dict[int, int] = {}
    for finished in rounds.values():
        before = (0, 0)
        for fallback, input_tokens, output_tokens in finished:
            if fallback is not None:
                inputs[fallback] = inputs.get(fallback, 0) + max(0, input_tokens - before[0])
                outputs[fallback] = outputs.get(fallback, 0) + max(0, output_tokens - before[1])
            before = (max(before[0], input_tokens), max(before[1], output_tokens))
    return inputs, outputs


def _add_tokens(
    tokens: dict[str, tuple[int, int, int, int]], reply: str, counts: tuple[int, int, int, int]
) -> None:
    """Token counts are running totals per reply: the largest seen is the reply's."""
    seen = tokens.get(reply, (0, 0, 0, 0))
    tokens[reply] = (
        max(seen[0], counts[0]),
        max(seen[1], counts[1]),
        max(seen[2], counts[2]),
        max(seen[3], counts[3]),
    )


def providers(config: AgentConfig | None, transport: str, direction: str = "") -> dict[str, tuple[str, str]]:
    """(provider, model) of each metered kind, as the agent version that ran the call configured them;
    telephony is priced by the call's ``direction`` (carriers price inbound and outbound minutes apart)."""

    def model(options: dict[str, Any], *names: str) -> str:
        return next((str(options[n]) for n in names if options.get(n)), "")

    if config is None:
        asr = llm = tts = s2s = ("unknown", "")
    else:
        hearing, voice = config.asr, config.tts
        if config.language != AUTO:  # what a Spanish agent really used: Whisper base, a Spanish voice
            hearing = recognizer_settings(config)
            voice = voice_settings(config, config.language, get_settings().piper_voices)
        asr = (hearing.provider, model(hearing.options, "model", "model_size", "model_path"))
        llm = (config.llm.provider, model(config.llm.options, "model", "model_path"))
        tts = (voice.provider, model(voice.options, "model", "voice", "model_path"))
        engine = getattr(config, "s2s", None)
        s2s = (engine.provider, model(engine.options, "model")) if engine is not None else llm
        if getattr(config, "mode", "pipeline") == "speech_to_speech":
            llm = s2s  # its tokens are the speech-to-speech model's
    who = {
        "asr_seconds": asr,
        "llm_input_tokens": llm,
        "llm_output_tokens": llm,
        "llm_audio_input_tokens": s2s,
        "llm_audio_output_tokens": s2s,
        "tts_characters": tts,
        "speech_to_speech_seconds": s2s,
        "telephony_minutes": (transport, direction),
    }
    if config is not None:  # what each fallback served is priced at that fallback
        for index, ear in enumerate(hearing.fallbacks):
            who[fallback_kind("asr_seconds", index)] = (
                ear.provider,
                model(ear.options, "model", "model_size", "model_path"),
            )
        for index, spare in enumerate(voice.fallbacks):
            who[fallback_kind("tts_characters", index)] = (
                spare.provider,
                model(spare.options, "model", "voice", "model_path"),
            )
        if getattr(config, "mode", "pipeline") != "speech_to_speech":
            for index, spare in enumerate(config.llm.fallbacks):
                named = (spare.provider, model(spare.options, "model", "model_path"))
                who[fallback_kind("llm_input_tokens", index)] = named
                who[fallback_kind("llm_output_tokens", index)] = named
    return who


def price_usage(
    pricing: Pricing,
    quantities: dict[str, float],
    config: AgentConfig | None,
    transport: str,
    direction: str = "",
) -> list[PricedLine]:
    who = providers(config, transport, direction)
    unknown = ("unknown", "")
    return [pricing.price(kind, *who.get(kind, unknown), quantity) for kind, quantity in quantities.items()]


async def agent_version_of(session: AsyncSession, call: Call) -> AgentVersion | None:
    """The agent version the call ran with (None for a call without an agent)."""
    if call.agent_version_id is None:
        return None
    return await AgentRepository(session).version_by_id(call.agent_version_id)


async def agent_config_of(session: AsyncSession, call: Call) -> AgentConfig | None:
    version = await agent_version_of(session, call)
    if version is None:
        return None
    try:
        return AgentConfig.model_validate(version.config)
    except ValidationError:
        return None


def carrier_duration_s(call: Call) -> int | None:
    """The seconds the carrier reported for the call (what it bills), if it did."""
    value = (call.metrics or {}).get(CARRIER_DURATION)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def duration_s(call: Call, end: datetime | None = None) -> float | None:
    finish = call.ended_at or end
    if call.started_at is None or finish is None:
        return None
    return max(0.0, (finish - call.started_at).total_seconds())


async def finish_call(session: AsyncSession, call: Call, pricing: Pricing) -> None:
    """When a call ends: latency figures, then usage priced at today's prices (kept with the call)."""
    events = await CallRepository(session).events(call.id)
    billed = carrier_duration_s(call)
    call.metrics = latency_summary(events) | ({CARRIER_DURATION: billed} if billed is not None else {})
    config = await agent_config_of(session, call)
    lines = price_usage(
        pricing,
        measure(events, transport=call.transport, duration_s=duration_s(call), billed_s=billed),
        config,
        call.transport,
        call.direction,
    )
    if call.transport == ROOM_TRANSPORT:  # a phone leg's end may have been written since ``call`` was read
        set_committed_value(call, "metadata_", await stored_metadata(session, call.id))
    lines += phone_leg_lines(pricing, call)
    at = call.ended_at or utcnow()
    await BillingRepository(session).replace_usage(
        call.id,
        [
            {
                "call_id": call.id,
                "org_id": call.org_id,
                "at": at,
                "kind": line.kind,
                "provider": line.provider,
                "model": line.model,
                "quantity": line.quantity,
                "unit": line.unit,
                "unit_price_micros": line.unit_price_micros,
                "cost_micros": line.cost_micros,
                "markup_micros": line.markup_micros,
            }
            for line in lines
        ],
    )


def breakdown(
    pricing: Pricing, lines: Sequence[UsageLine | PricedLine], *, provisional: bool = False
) -> CostBreakdown:
    subtotal = sum(line.cost_micros for line in lines)
    markup = sum(line.markup_micros for line in lines)
    return CostBreakdown(
        lines=[
            CostLine(
                kind=line.kind,
                provider=line.provider,
                model=line.model,
                quantity=line.quantity,
                unit=line.unit,
                price_usd=table_price(line.kind, line.unit_price_micros),
                price_unit=meter(line.kind).price_unit,
                cost_usd=money(line.cost_micros),
            )
            for line in lines
        ],
        subtotal_usd=money(subtotal),
        markup_usd=money(markup),
        total_usd=money(subtotal + markup),
        currency=pricing.currency,
        exchange_rate=pricing.rate,
        total=pricing.convert(subtotal + markup),
        provisional=provisional,
    )


async def call_costs(session: AsyncSession, call: Call, pricing: Pricing) -> CostBreakdown:
    """The stored cost lines of an ended call, or a provisional estimate for a running one."""
    stored = await BillingRepository(session).usage(call.id)
    if stored or call.ended_at is not None:
        return breakdown(pricing, stored)
    events = await CallRepository(session).events(call.id)
    quantities = measure(events, transport=call.transport, duration_s=duration_s(call, utcnow()))
    config = await agent_config_of(session, call)
    lines = price_usage(pricing, quantities, config, call.transport, call.direction)
    return breakdown(pricing, lines + phone_leg_lines(pricing, call), provisional=True)


async def stored_metadata(session: AsyncSession, call_id: str) -> dict[str, Any] | None:
    """The call's metadata as stored now (this transaction's own changes flushed first). Read once the
    transaction writes (holds SQLite's write lock, or the row's in PostgreSQL), no other writer's phone
    leg can slip in between this read and the usage priced from it."""
    value = await session.scalar(select(Call.metadata_).where(Call.id == call_id))
    return value if isinstance(value, dict) else None


def phone_leg_seconds(leg: Any) -> int | None:
    """The seconds the carrier billed for one phone leg of a room: its ``CallDuration`` if it was answered
    and has ended; None for a leg still ringing or talking, or one nobody answered (it costs nothing)."""
    if not isinstance(leg, dict) or leg.get("status") != ANSWERED:
        return None
    seconds = leg.get("duration_s")
    return seconds if isinstance(seconds, int) and not isinstance(seconds, bool) and seconds >= 0 else None


def phone_leg_minutes(call: Call) -> float:
    """The telephony minutes of a coached room's phone legs: each leg is a carrier call of its own, so
    each is rounded as a phone call is (``measure``), then they are added up. Only a room's call has
    legs: another call's metadata is its creator's, and billing is not read from it."""
    legs = (call.metadata_ or {}).get(PHONE_LEGS) if call.transport == ROOM_TRANSPORT else None
    if not isinstance(legs, list):
        return 0.0
    transport, _direction = PHONE_LEG_CARRIER
    minutes = 0.0
    for leg in legs:
        seconds = phone_leg_seconds(leg)
        if seconds is not None:
            carrier = measure((), transport=transport, duration_s=float(seconds), billed_s=seconds)
            minutes += carrier.get("telephony_minutes", 0.0)
    return minutes


def phone_leg_lines(pricing: Pricing, call: Call) -> list[PricedLine]:
    """The priced telephony line of a coached room's answered phone legs (none when there are none)."""
    minutes = phone_leg_minutes(call)
    if not minutes:
        return []
    return price_usage(pricing, {"telephony_minutes": minutes}, None, *PHONE_LEG_CARRIER)
