"""The live coach: triggers on the timeline, then a hint for each, from the model when it is quick enough."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pytest
import structlog

from parley.analysis.coach import Hint, LiveCoach, clean_hint
from parley.engine.coaching import CoachingSettings
from parley.engine.events import EventType
from parley.engine.knowledge import KnowledgeIndex
from parley.providers.llm.base import ChatMessage, LLMChunk, ToolSpec
from parley.providers.llm.scripted import ScriptedModel, ScriptRule


@dataclass(frozen=True)
class Said:
    """Shaped like parley.rooms' Utterance (the coach accepts anything of that shape)."""

    participant_id: str
    role: str
    text: str
    start: float
    end: float


def customer(text: str, start: float = 0.0) -> Said:
    return Said("cust-1", "customer", text, start, start + 2)


def rep(text: str, start: float = 0.0) -> Said:
    return Said("rep-1", "rep", text, start, start + 2)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class Recorder:
    """The call's timeline as the coach writes it, and the hints handed to the rep's page."""

    def __init__(self) -> None:
        self.events: list[tuple[EventType, dict[str, Any]]] = []
        self.hints: list[Hint] = []

    def emit(self, kind: EventType, data: dict[str, Any]) -> None:
        self.events.append((kind, data))

    async def on_hint(self, hint: Hint) -> None:
        self.hints.append(hint)

    def of(self, kind: EventType) -> list[dict[str, Any]]:
        return [data for k, data in self.events if k == kind]


class HangingModel:
    """A model that never answers (a stuck server); it notices cancellation like any awaiting code."""

    name = "hanging"

    def __init__(self) -> None:
        self.asked = asyncio.Event()
        self.cancelled = 0

    async def stream(
        self,
        messages: list[ChatMessage],
        tools: list[ToolSpec] | None = None,
        *,
        max_tokens: int = 128,
        temperature: float = 0.0,
    ) -> AsyncIterator[LLMChunk]:
        self.asked.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        yield LLMChunk(text="never")

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    async def warm_up(
        self, messages: list[ChatMessage] | None = None, tools: list[ToolSpec] | None = None
    ) -> None:
        return None


class BrokenModel(HangingModel):
    async def stream(
        self,
        messages: list[ChatMessage],
        tools: list[ToolSpec] | None = None,
        *,
        max_tokens: int = 128,
        temperature: float = 0.0,
    ) -> AsyncIterator[LLMChunk]:
        raise ConnectionError("model server went away")
        yield LLMChunk()  # pragma: no cover  (makes this an async generator)


PLAYBOOK = KnowledgeIndex.from_documents(
    [
        (
            "playbook.md",
            "## Price objections\n\nWhen the customer says the price is too high, ask what it costs them to "
            "do nothing, then offer the annual plan with its 15 percent discount.\n\n"
            "## Onboarding\n\nOnboarding takes two weeks with a named engineer.",
        )
    ]
)


def settings(**values: Any) -> CoachingSettings:
    return CoachingSettings.model_validate({"enabled": True, **values})


def coach(recorder: Recorder, *, llm: Any = None, clock: Clock | None = None, **values: Any) -> LiveCoach:
    return LiveCoach(
        settings(**values),
        recorder.emit,
        llm=llm,
        playbook=PLAYBOOK,
        on_hint=recorder.on_hint,
        clock=clock or Clock(),
    )


async def test_a_price_objection_gets_a_rule_hint_without_a_model() -> None:
    rec = Recorder()
    c = coach(rec)
    await c.on_utterance(customer("Honestly, that's way too expensive for us."))
    await c.drain()
    assert [kind for kind, _ in rec.events] == [EventType.COACH_TRIGGER, EventType.COACH_HINT]
    [trigger] = rec.of(EventType.COACH_TRIGGER)
    assert trigger == {
        "trigger": "price_objection",
        "participant_id": "cust-1",
        "role": "customer",
        "text": "Honestly, that's way too expensive for us.",
        "phrase": "too * expensive",
        "at": 100.0,
    }
    [hint] = rec.of(EventType.COACH_HINT)
    assert hint["source"] == "rule" and hint["whisper"] is False
    assert hint["text"] == c.matcher.triggers["price_objection"].hint
    assert [h.trigger for h in rec.hints] == ["price_objection"]


class Role(StrEnum):
    CUSTOMER = "customer"


async def test_a_room_role_enum_becomes_a_plain_string_on_the_timeline() -> None:
    rec = Recorder()
    c = coach(rec)
    await c.on_utterance(Said("cust-1", Role.CUSTOMER, "I want to cancel.", 0, 1))
    await c.drain()
    [trigger] = rec.of(EventType.COACH_TRIGGER)
    assert type(trigger["role"]) is str and trigger["role"] == "customer"


async def test_a_quick_model_words_the_hint_from_the_playbook_and_the_call() -> None:
    rec = Recorder()
    llm = ScriptedModel(
        [
            ScriptRule.say(
                "objects to the price",
                'Hint: "Ask what doing nothing costs them, then offer the annual plan."\nWhy: because.',
            )
        ]
    )
    c = coach(rec, llm=llm, whisper_hints=True)
    await c.on_utterance(rep("So the plan is four hundred a month."))
    await c.on_utterance(customer("That's too expensive.", start=3))
    await c.drain()
    card, hint = rec.of(EventType.COACH_HINT)
    assert (card["source"], card["refines"], card["whisper"]) == ("rule", False, True)
    assert card["text"] == c.matcher.triggers["price_objection"].hint, "the card shows at once"
    assert hint["text"] == "Ask what doing nothing costs them, then offer the annual plan."
    assert (hint["source"], hint["refines"], hint["whisper"]) == ("llm", True, False)
    assert hint["id"] == card["id"], "the model rewrites the card already shown, once"
    asked = llm.calls[0][-1].content
    assert "15 percent discount" in asked  # the playbook passage about price
    assert "Rep: So the plan is four hundred a month." in asked and "Customer: That's too expensive." in asked
    assert [(h.text, h.refines) for h in rec.hints] == [(card["text"], False), (hint["text"], True)]


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("", "empty"),
        ('{"hint": "offer a discount"}', "markup"),
        ("<think>hmm</think>", "markup"),
        ("...", "empty"),
    ],
)
async def test_an_unusable_answer_leaves_the_rule_hint(reply: str, reason: str) -> None:
    rec = Recorder()
    c = coach(rec, llm=ScriptedModel([], default_reply=reply))
    with structlog.testing.capture_logs() as logs:
        await c.on_utterance(customer("We want to cancel."))
        await c.drain()
    [hint] = rec.of(EventType.COACH_HINT)
    assert (hint["source"], hint["refines"]) == ("rule", False)
    assert hint["text"] == c.matcher.triggers["cancellation_intent"].hint
    assert [entry["reason"] for entry in logs if "reason" in entry] == [reason]


async def test_a_model_error_falls_back_to_the_rule_hint() -> None:
    rec = Recorder()
    c = coach(rec, llm=BrokenModel())
    await c.on_utterance(customer("We want to cancel."))
    await c.drain()
    assert [(h.source, h.trigger, h.refines) for h in rec.hints] == [("rule", "cancellation_intent", False)]


async def test_a_slow_model_times_out_without_holding_up_the_next_utterance() -> None:
    rec = Recorder()
    llm = HangingModel()
    c = LiveCoach(
        settings(hint_timeout_s=0.2), rec.emit, llm=llm, on_hint=rec.on_hint
    )  # the real clock: the timeout is real
    await c.on_utterance(customer("How much does it cost?"))
    await llm.asked.wait()
    await c.on_utterance(customer("And we're also talking to another vendor."))
    kinds = [(kind, data["trigger"]) for kind, data in rec.events]
    assert kinds == [
        (EventType.COACH_TRIGGER, "pricing_question"),
        (EventType.COACH_HINT, "pricing_question"),
        (EventType.COACH_TRIGGER, "competitor_mention"),
    ]  # the card showed at once, and the next words were heard while the model was still busy
    await c.drain()
    hints = rec.of(EventType.COACH_HINT)
    assert sorted(h["trigger"] for h in hints) == ["competitor_mention", "pricing_question"]
    assert all(h["source"] == "rule" and not h["refines"] for h in hints)
    assert all(h["latency_ms"] < 100 for h in hints)
    assert llm.cancelled == 2


async def test_use_llm_false_means_rule_hints() -> None:
    rec = Recorder()
    llm = ScriptedModel([], default_reply="Say something clever.")
    c = coach(rec, llm=llm, use_llm=False)
    await c.on_utterance(customer("It's too pricey."))
    await c.drain()
    assert rec.hints[0].source == "rule" and llm.calls == []


async def test_cooldown_and_the_per_call_maximum() -> None:
    rec = Recorder()
    clock = Clock()
    c = coach(rec, clock=clock)  # price_objection: 30 s cooldown, 3 per call
    for at in (0, 10, 29.9, 30, 45, 61, 100, 200):
        clock.t = 100 + at
        await c.on_utterance(customer("That's too expensive.", start=at))
    await c.drain()
    fired = [d["at"] - 100 for d in rec.of(EventType.COACH_TRIGGER)]
    assert fired == [0, 30, 61]
    assert len(rec.hints) == 3
    summary = c.summary()
    assert summary["triggers"] == {"price_objection": 3} and summary["held_back"] == {"price_objection": 5}


async def test_a_team_cooldown_and_maximum() -> None:
    rec = Recorder()
    team = [
        {
            "name": "price_objection",
            "phrases": ["too expensive"],
            "hint": "Value first.",
            "cooldown_s": 0,
            "max_per_call": 1,
        }
    ]
    c = coach(rec, triggers=team)
    await c.on_utterance(customer("too expensive"))
    await c.on_utterance(customer("too expensive"))
    await c.drain()
    assert [h.text for h in rec.hints] == ["Value first."]


async def test_the_rep_saying_an_objection_fires_no_customer_trigger() -> None:
    rec = Recorder()
    c = coach(rec)
    await c.on_utterance(rep("Some people find it too expensive at first, but do you want to cancel?"))
    await c.drain()
    assert rec.events == []


async def test_a_commitment_without_a_next_step_fires_next_step_missing() -> None:
    rec = Recorder()
    c = coach(rec)
    await c.on_utterance(customer("Sounds good, let's do it.", start=0))
    await c.on_utterance(rep("Awesome, glad you like it.", start=3))
    assert rec.events == []
    await c.on_utterance(rep("Anything else I can help with?", start=6))
    await c.drain()
    [trigger] = rec.of(EventType.COACH_TRIGGER)
    assert (trigger["trigger"], trigger["role"], trigger["text"]) == (
        "next_step_missing",
        "customer",
        "Sounds good, let's do it.",
    )
    assert [h.trigger for h in rec.hints] == ["next_step_missing"]


async def test_a_commitment_answered_with_a_next_step_fires_nothing() -> None:
    rec = Recorder()
    c = coach(rec)
    await c.on_utterance(customer("Sounds good, let's do it.", start=0))
    await c.on_utterance(rep("Great, I'll send you the order form and book the kickoff for Monday.", start=3))
    await c.on_utterance(rep("Anything else?", start=6))
    await c.on_utterance(rep("Bye!", start=9))
    await c.drain()
    assert rec.events == []


async def test_dead_air_and_a_late_next_step_fire_on_tick() -> None:
    rec = Recorder()
    clock = Clock()
    c = coach(rec, clock=clock)
    await c.on_utterance(Said("cust-1", "customer", "Okay, let's move forward.", 100, 102))
    clock.t = 106
    await c.tick()
    assert [d["trigger"] for d in rec.of(EventType.COACH_TRIGGER)] == []
    clock.t = 107
    await c.tick()
    assert [d["trigger"] for d in rec.of(EventType.COACH_TRIGGER)] == ["dead_air"]
    assert rec.of(EventType.COACH_TRIGGER)[0]["value"] == 5.0
    clock.t = 132
    await c.tick()
    await c.drain()
    assert [d["trigger"] for d in rec.of(EventType.COACH_TRIGGER)] == ["dead_air", "next_step_missing"]
    assert sorted(h.trigger for h in rec.hints) == ["dead_air", "next_step_missing"]


async def test_a_long_rep_monologue_and_an_unhappy_customer() -> None:
    rec = Recorder()
    c = coach(rec, monologue_s=20)
    await c.on_utterance(customer("I'm really frustrated, this has been a terrible, awful experience.", 0))
    await c.on_utterance(Said("rep-1", "rep", "Let me explain how our platform works.", 3, 15))
    await c.on_utterance(Said("rep-1", "rep", "It has many features that you will find useful.", 15.5, 26))
    await c.drain()
    assert [d["trigger"] for d in rec.of(EventType.COACH_TRIGGER)] == ["negative_sentiment", "long_monologue"]
    assert [h.trigger for h in rec.hints] == ["negative_sentiment", "long_monologue"]


async def test_one_utterance_can_fire_several_triggers_each_with_its_hint() -> None:
    rec = Recorder()
    llm = ScriptedModel([ScriptRule.say("competitor", "Ask what they like about Acme.")], token_delay=0.001)
    c = coach(rec, llm=llm, competitors=["Acme"])
    await c.on_utterance(customer("Acme is cheaper, honestly."))
    await c.drain()
    triggers = [d["trigger"] for d in rec.of(EventType.COACH_TRIGGER)]
    assert triggers == ["price_objection", "competitor_mention"]
    kinds = [k for k, _ in rec.events]
    assert kinds[:2] == [EventType.COACH_TRIGGER, EventType.COACH_TRIGGER]
    assert sorted(h.trigger for h in rec.hints if not h.refines) == sorted(triggers)
    assert sorted(h.trigger for h in rec.hints if h.refines) == sorted(triggers), "each card rewritten once"


async def test_a_coach_that_is_not_enabled_only_measures() -> None:
    rec = Recorder()
    c = LiveCoach(CoachingSettings(), rec.emit, on_hint=rec.on_hint)
    await c.on_utterance(customer("That's too expensive and I want to cancel."))
    await c.drain()
    assert rec.events == [] and c.summary()["metrics"]["roles"]["customer"]["utterances"] == 1


async def test_close_drops_hints_still_in_flight() -> None:
    rec = Recorder()
    llm = HangingModel()
    c = LiveCoach(settings(hint_timeout_s=5), rec.emit, llm=llm, on_hint=rec.on_hint)
    await c.on_utterance(customer("too expensive"))
    await llm.asked.wait()
    await c.close()
    assert [h.refines for h in rec.hints] == [False], "the card stays, its rewrite never comes"
    assert len(rec.of(EventType.COACH_HINT)) == 1 and llm.cancelled == 1


async def test_a_failing_page_does_not_break_the_coach() -> None:
    rec = Recorder()

    def broken(hint: Hint) -> None:
        raise RuntimeError("socket closed")

    c = LiveCoach(settings(), rec.emit, on_hint=broken)
    await c.on_utterance(customer("too expensive"))
    await c.drain()
    await c.on_utterance(customer("I want to cancel"))
    await c.drain()
    assert [d["trigger"] for d in rec.of(EventType.COACH_HINT)] == ["price_objection", "cancellation_intent"]


def test_summary_is_for_the_call_record() -> None:
    c = LiveCoach(settings(), lambda kind, data: None)
    summary = c.summary()
    assert set(summary) == {"triggers", "held_back", "hints", "metrics"}


@pytest.mark.parametrize(
    ("said", "hint"),
    [
        ("Acknowledge the concern.", "Acknowledge the concern."),
        ('Hint: "**Acknowledge** the concern."', "Acknowledge the concern."),
        ("- Tip: ask about their budget\nand more", "ask about their budget"),
        ("\n\n  Ask about budget.", "Ask about budget."),
        (
            "Ask what matters most. Then tie the price to it. Then mention the annual plan discount and the "
            "onboarding engineer we include.",
            "Ask what matters most. Then tie the price to it.",
        ),
        (" ".join(["word"] * 30), " ".join(["word"] * 20) + "…"),
    ],
)
def test_model_hints_are_cleaned_to_one_short_line(said: str, hint: str) -> None:
    assert clean_hint(said) == hint
