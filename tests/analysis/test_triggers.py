"""The coach's fast rules: which utterances fire which built-in trigger, and the settings teams write."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from parley.analysis.phrases import words_of
from parley.analysis.trigger_catalog import BUILTIN_TRIGGERS, DEFAULT_NEXT_STEPS
from parley.analysis.triggers import NEXT_STEP_WINDOW_S, NextStepWatch, TriggerMatcher
from parley.engine.agent import AgentConfig, AgentConfigError, load_agent
from parley.engine.coaching import CoachingSettings, TriggerSettings


def coaching(**values: Any) -> CoachingSettings:
    return CoachingSettings.model_validate({"enabled": True, **values})


TEAM = coaching(competitors=["Acme", "Globex Corp", "Gong.io"])

# (role, what was said, the triggers it fires). Phrasings people use, and the look-alikes that must not fire.
TABLE: list[tuple[str, str, set[str]]] = [
    # price objections
    ("customer", "That's way too expensive for us.", {"price_objection"}),
    ("customer", "Honestly it's too damn expensive", {"price_objection"}),
    ("customer", "It's a bit pricey for a team our size.", {"price_objection"}),
    ("customer", "We can't afford that right now.", {"price_objection"}),
    ("customer", "we cannot afford it this quarter", {"price_objection"}),
    ("customer", "We cant afford it", {"price_objection"}),
    ("customer", "Not sure we can afford this.", {"price_objection"}),
    ("customer", "That's out of our budget.", {"price_objection"}),
    ("customer", "It costs too much.", {"price_objection"}),
    ("customer", "Your price is too high.", {"price_objection"}),
    ("customer", "The prices are a bit high for what it does", {"price_objection"}),
    ("customer", "Honestly, it's not worth the money.", {"price_objection"}),
    ("customer", "We're already over budget.", {"price_objection"}),
    ("customer", "NO. TOO EXPENSIVE!", {"price_objection"}),
    ("customer", "No, that’s too expensive for us", {"price_objection"}),
    ("customer", "Can you do a better price?", {"price_objection"}),
    ("customer", "That's more than we're willing to pay.", {"price_objection"}),
    ("customer", "Our budget's really tight this year.", {"price_objection"}),
    ("customer", "Four hundred a month? That's steep.", {"price_objection"}),
    ("customer", "Is there any wiggle room on the price?", {"price_objection"}),
    # pricing questions
    ("customer", "How much does it cost?", {"pricing_question"}),
    ("customer", "What's your pricing like?", {"pricing_question"}),
    ("customer", "what does the pro plan cost", {"pricing_question"}),
    ("customer", "Is that priced per seat?", {"pricing_question"}),
    ("customer", "Could you send me a quote?", {"pricing_question"}),
    ("customer", "How much would we pay for fifty users?", {"pricing_question"}),
    ("customer", "Are there any setup fees?", {"pricing_question"}),
    # competitors
    ("customer", "We're also talking to Acme.", {"competitor_mention"}),
    ("customer", "GLOBEX CORP called us last week", {"competitor_mention"}),
    ("customer", "We use gong.io today", {"competitor_mention"}),
    ("customer", "We're looking at another vendor.", {"competitor_mention"}),
    ("customer", "Your competitors are doing this already.", {"competitor_mention"}),
    ("customer", "Globex Corp gave us a better deal.", {"competitor_mention", "price_objection"}),
    # cancellation
    ("customer", "I want to cancel my subscription.", {"cancellation_intent"}),
    ("customer", "We're thinking about switching providers.", {"cancellation_intent"}),
    ("customer", "Please close my account.", {"cancellation_intent"}),
    ("customer", "We won't be renewing the contract.", {"cancellation_intent"}),
    ("customer", "If this isn't fixed, we'll cancel.", {"cancellation_intent"}),
    ("customer", "I’m cancelling.", {"cancellation_intent"}),
    ("customer", "No, I want to terminate the agreement.", {"cancellation_intent"}),
    (
        "customer",
        "We've decided to go with a different provider.",
        {"cancellation_intent", "competitor_mention"},
    ),
    # must not fire
    ("customer", "No problem with the price.", set()),
    ("customer", "The price is fine.", set()),
    ("customer", "It's not too expensive.", set()),
    ("customer", "Honestly it isn't that expensive", set()),
    ("customer", "I don't think it's too expensive.", set()),
    ("customer", "The price isn't an issue.", set()),
    ("customer", "I wouldn't say we're over budget", set()),
    ("customer", "It's inexpensive compared to what we have now.", set()),
    ("customer", "I don't want to cancel.", set()),
    ("customer", "We're not going to cancel, we love it.", set()),
    ("customer", "Can we cancel the meeting tomorrow and do Friday?", set()),
    ("customer", "Do the headsets have noise cancelling?", set()),
    ("customer", "How much time do we have left?", set()),
    ("customer", "Thanks, that makes sense.", set()),
    ("customer", "Acmeville is a nice town.", set()),
    ("customer", "We're not looking at any other vendors.", set()),
    ("customer", "The learning curve is steep.", set()),
    ("customer", "", set()),
    ("customer", "...", set()),
    # whose words count
    ("rep", "I know it can seem too expensive at first.", set()),
    ("rep", "How much does your current tool cost?", set()),
    ("rep", "Do you want to cancel?", set()),
    ("coach", "too expensive, cancel, Acme", set()),
]


@pytest.mark.parametrize(("role", "text", "expected"), TABLE)
def test_the_built_in_triggers_fire_on_what_people_say(role: str, text: str, expected: set[str]) -> None:
    fired = {m.trigger for m in TriggerMatcher(TEAM).match(role, text)}
    assert fired == expected, text


def test_the_table_is_broad() -> None:
    assert len(TABLE) >= 40
    assert sum(1 for *_, e in TABLE if not e) >= 15


def test_a_match_names_the_phrase_that_matched() -> None:
    [match] = TriggerMatcher(TEAM).match("customer", "Well, that is too darn expensive.")
    assert (match.trigger, match.phrase) == ("price_objection", "too * expensive")


def test_words_spell_out_contractions_and_ignore_case_and_punctuation() -> None:
    assert [w.text for w in words_of("We CAN'T—it’s Acme's!")] == [
        "we",
        "can",
        "not",
        "it",
        "is",
        "acme",
        "is",
    ]


def test_a_wildcard_stands_for_up_to_three_words_and_never_for_a_negation() -> None:
    matcher = TriggerMatcher(
        coaching(triggers=[{"name": "legal", "phrases": ["legal * review"], "hint": "Offer the DPA."}])
    )
    assert matcher.match("customer", "legal review") != []
    assert matcher.match("customer", "it needs legal team sign off review") != []
    assert matcher.match("customer", "legal has to do a review") == []  # four words between
    assert matcher.match("customer", "legal did not review it") == []


def test_a_team_can_turn_a_built_in_off_or_replace_it() -> None:
    off = TriggerMatcher(coaching(triggers=[{"name": "price_objection", "enabled": False}]))
    assert off.match("customer", "That's too expensive.") == []
    assert [m.trigger for m in off.match("customer", "How much is the basic plan?")] == ["pricing_question"]

    replaced = TriggerMatcher(
        coaching(
            triggers=[
                {
                    "name": "price_objection",
                    "phrases": ["highway robbery"],
                    "hint": "Breathe.",
                    "speaker": "any",
                }
            ]
        )
    )
    assert replaced.match("customer", "too expensive") == []
    assert [m.trigger for m in replaced.match("rep", "That is highway robbery")] == ["price_objection"]


def test_a_team_trigger_with_unless_and_negation() -> None:
    matcher = TriggerMatcher(
        coaching(
            triggers=[
                {
                    "name": "security_concern",
                    "phrases": ["security", "gdpr"],
                    "unless": ["security team approved"],
                    "negation": True,
                    "hint": "Offer the security whitepaper.",
                }
            ]
        )
    )
    assert [m.trigger for m in matcher.match("customer", "What about GDPR?")] == ["security_concern"]
    assert matcher.match("customer", "Our security team approved it already") == []
    assert matcher.match("customer", "no worries about security") != []  # "no" opens the clause
    assert matcher.match("customer", "there are no security worries") == []


def test_phrases_are_text_not_regular_expressions() -> None:
    trigger = TriggerSettings(name="weird", phrases=["(a+)+$", "^x+?$"], hint="h")
    matcher = TriggerMatcher(coaching(triggers=[trigger.model_dump()]))
    hostile = "a" * 50_000 + "!"
    started = time.perf_counter()
    assert matcher.match("customer", hostile) == []
    assert matcher.match("customer", "x" * 20_000) == []
    assert time.perf_counter() - started < 2.0  # a backtracking (a+)+$ would never finish
    # Punctuation is not part of a phrase (transcripts barely have any): "(a+)+$" is the word "a".
    assert [m.phrase for m in matcher.match("customer", "I said (a+)+$ to them")] == ["(a+)+$"]
    assert [m.phrase for m in matcher.match("customer", "just x")] == ["^x+?$"]


def test_builtins_are_valid_settings_with_hints() -> None:
    names = [t.name for t in BUILTIN_TRIGGERS]
    assert names == [
        "price_objection",
        "pricing_question",
        "competitor_mention",
        "cancellation_intent",
        "next_step_missing",
        "long_monologue",
        "dead_air",
        "negative_sentiment",
    ]
    assert all(t.hint and len(t.hint) <= 200 for t in BUILTIN_TRIGGERS)
    steps = TriggerSettings(
        name="next_step_missing", phrases=["ok"], hint="h", next_steps=list(DEFAULT_NEXT_STEPS)
    )
    assert len(steps.next_steps) == len(DEFAULT_NEXT_STEPS)


def test_a_team_can_say_what_counts_as_a_next_step() -> None:
    team = {"name": "next_step_missing", "phrases": ["deal"], "next_steps": ["purchase order"], "hint": "PO!"}
    matcher = TriggerMatcher(coaching(triggers=[team]))
    w = NextStepWatch(matcher)
    w.on_utterance("c1", "customer", "Deal.", 0, 1)
    assert w.on_utterance("r1", "rep", "I'll send the purchase order.", 1, 2) == []
    assert w.on_utterance("r1", "rep", "Bye.", 2, 3) == []
    w = NextStepWatch(matcher)
    w.on_utterance("c1", "customer", "Deal!", 0, 1)
    w.on_utterance("r1", "rep", "Let's book a call tomorrow.", 1, 2)  # not a next step for this team
    assert [d.match.phrase for d in w.on_utterance("r1", "rep", "Bye.", 2, 3)] == ["deal"]


@pytest.mark.parametrize(
    ("trigger", "message"),
    [
        ({"name": "Bad-Name", "phrases": ["x"], "hint": "h"}, "name"),
        ({"name": "x" * 41, "phrases": ["x"], "hint": "h"}, "name"),
        ({"name": "t", "phrases": ["x"] * 101, "hint": "h"}, "phrases"),
        ({"name": "t", "phrases": ["x" * 81], "hint": "h"}, "phrases"),
        ({"name": "t", "phrases": [""], "hint": "h"}, "phrases"),
        ({"name": "t", "phrases": ["?!"], "hint": "h"}, "at least one word"),
        ({"name": "t", "phrases": ["* too"], "hint": "h"}, "between two words"),
        ({"name": "t", "phrases": ["too * * much"], "hint": "h"}, "between two words"),
        ({"name": "t", "phrases": ["too*much"], "hint": "h"}, "stands alone"),
        ({"name": "t", "phrases": ["a * b * c * d * e"], "hint": "h"}, "at most 3"),
        ({"name": "t", "unless": ["x"] * 101, "phrases": ["y"], "hint": "h"}, "unless"),
        ({"name": "t", "phrases": ["x"], "hint": "h" * 201}, "hint"),
        ({"name": "t", "phrases": ["x"]}, "needs a hint"),
        ({"name": "t", "hint": "h"}, "needs at least one phrase"),
        ({"name": "t", "phrases": ["x"], "hint": "h", "cooldown_s": 3601}, "cooldown_s"),
        ({"name": "t", "phrases": ["x"], "hint": "h", "max_per_call": 0}, "max_per_call"),
        ({"name": "t", "phrases": ["x"], "hint": "h", "regex": "x+"}, "regex"),
        ({"name": "dead_air", "phrases": ["x"], "hint": "h"}, "takes no phrases"),
        ({"name": "t", "phrases": ["x"], "hint": "h", "next_steps": ["call"]}, "next_steps"),
    ],
)
def test_bad_triggers_are_refused_with_the_reason(trigger: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        coaching(triggers=[trigger])


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"triggers": [{"name": "t", "phrases": ["x"], "hint": "h"}] * 2}, "two triggers are named t"),
        ({"triggers": [{"name": f"t{i}", "phrases": ["x"], "hint": "h"} for i in range(51)]}, "triggers"),
        ({"competitors": ["Acme"] * 51}, "competitors"),
        ({"hint_timeout_s": 0.1}, "hint_timeout_s"),
        ({"negative_sentiment": 0.5}, "negative_sentiment"),
        ({"whisper": True}, "whisper"),
    ],
)
def test_bad_coaching_settings_are_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        coaching(**values)


def test_a_disabled_trigger_needs_no_phrases_or_hint() -> None:
    settings = coaching(triggers=[{"name": "cancellation_intent", "enabled": False}])
    assert settings.triggers[0].enabled is False


def test_an_agent_yaml_with_a_coaching_block_loads(tmp_path: Path) -> None:
    path = tmp_path / "sales.yaml"
    path.write_text(
        """
name: sales
coaching:
  enabled: true
  competitors: [Acme, Globex]
  whisper_hints: true
  triggers:
    - name: price_objection
      phrases: ["too * expensive", "(a+)+$"]
      unless: ["not too expensive"]
      hint: Ask what they compare the price with.
      cooldown_s: 10
    - name: dead_air
      enabled: false
""",
        encoding="utf-8",
    )
    agent = load_agent(path)
    assert agent.coaching.enabled and agent.coaching.competitors == ["Acme", "Globex"]
    assert agent.coaching.triggers[0].phrases == ["too * expensive", "(a+)+$"]
    assert agent.coaching.triggers[1].enabled is False
    assert load_agent(path).model_dump()["coaching"]["triggers"][0]["cooldown_s"] == 10


def test_the_yaml_in_the_coaching_docs_is_valid() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "coaching.md").read_text(encoding="utf-8")
    agent_block, trigger_block = re.findall(r"```yaml\n(.*?)```", docs, re.DOTALL)
    agent = AgentConfig.model_validate(yaml.safe_load(agent_block))
    assert agent.coaching.enabled and agent.coaching.triggers[1].name == "dead_air"
    [trigger] = yaml.safe_load(trigger_block)
    settings = coaching(triggers=[trigger])
    [match] = TriggerMatcher(settings).match("customer", "We'd need a security team review first.")
    assert match.trigger == "security_review"


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (
            "coaching:\n  triggers:\n    - {name: t, hint: h, phrases: [" + ", ".join(["x"] * 101) + "]}\n",
            "phrases",
        ),
        ("coaching:\n  triggers:\n    - {name: 'Price!', hint: h, phrases: [x]}\n", "name"),
        ("coaching:\n  enabld: true\n", "enabld"),
        ("coaching:\n  triggers:\n    - {name: t, hint: h, phrases: [x], pattern: 'x+'}\n", "pattern"),
    ],
)
def test_a_bad_coaching_block_is_refused_naming_the_field(tmp_path: Path, block: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(block, encoding="utf-8")
    with pytest.raises(AgentConfigError, match=message):
        load_agent(path)


# --- the deferred next_step_missing -------------------------------------------------------------------


def watch() -> NextStepWatch:
    return NextStepWatch(TriggerMatcher(TEAM))


def test_a_commitment_without_a_next_step_fires_after_two_rep_turns() -> None:
    w = watch()
    assert w.on_utterance("c1", "customer", "Sounds good, let's do it.", 10, 12) == []
    assert w.on_utterance("r1", "rep", "Great, glad to hear it!", 12.5, 14) == []
    [due] = w.on_utterance("r1", "rep", "Thanks so much for your time.", 14.5, 16)
    assert (due.match.trigger, due.participant_id, due.text) == (
        "next_step_missing",
        "c1",
        "Sounds good, let's do it.",
    )
    assert not w.waiting


def test_a_next_step_from_the_rep_ends_the_watch() -> None:
    w = watch()
    w.on_utterance("c1", "customer", "I'm interested.", 0, 1)
    assert w.on_utterance("r1", "rep", "Great! I'll send the contract over today.", 1.5, 3) == []
    assert w.on_utterance("r1", "rep", "Talk soon.", 3.5, 4) == []
    assert w.due(100) == []


def test_agreeing_to_the_reps_proposal_needs_no_other_next_step() -> None:
    w = watch()
    w.on_utterance("r1", "rep", "Shall I book a demo for Tuesday at ten?", 0, 3)
    w.on_utterance("c1", "customer", "That works for me.", 3.5, 4.5)
    assert w.on_utterance("r1", "rep", "Perfect.", 5, 5.5) == []
    assert w.on_utterance("r1", "rep", "Bye now.", 6, 6.5) == []


def test_a_commitment_left_alone_fires_after_the_window() -> None:
    w = watch()
    w.on_utterance("c1", "customer", "Let's move forward.", 10, 12)
    assert w.due(12 + NEXT_STEP_WINDOW_S - 1) == []
    assert [d.match.trigger for d in w.due(12 + NEXT_STEP_WINDOW_S)] == ["next_step_missing"]
    assert w.due(200) == []


@pytest.mark.parametrize(
    "text", ["I'm not interested.", "Sounds good, but I need to check with my boss.", "It doesn't sound good"]
)
def test_what_is_not_a_commitment_starts_no_watch(text: str) -> None:
    w = watch()
    w.on_utterance("c1", "customer", text, 0, 1)
    assert not w.waiting


@pytest.mark.parametrize(
    ("said", "fires"),
    [
        ("My neighbor went with sun power last year.", True),
        ("We moved everything to Hub Spot.", True),
        ("hubspot quoted us less", True),
        ("We looked at Acme Corp too.", True),
        ("We looked at acmecorp too.", True),
        ("Our hub spots are busy.", False),
    ],
)
def test_competitor_names_match_however_the_transcript_spaces_them(said: str, fires: bool) -> None:
    matcher = TriggerMatcher(CoachingSettings(enabled=True, competitors=["HubSpot", "SunPower", "Acme Corp"]))
    found = [m.trigger for m in matcher.match("customer", said)]
    assert ("competitor_mention" in found) is fires


@pytest.mark.parametrize(
    "said",
    [
        "What would the whole system run me?",
        "Roughly what will it set us back?",
        "How much would it run us?",
        "What are you charging these days?",
    ],
)
def test_colloquial_price_questions(said: str) -> None:
    found = [m.trigger for m in TriggerMatcher(CoachingSettings(enabled=True)).match("customer", said)]
    assert "pricing_question" in found
