"""Live conversation metrics: what the rep's page shows and the limits the coach reacts to."""

from __future__ import annotations

import json

import pytest

from parley.analysis.conversation_metrics import ConversationMetrics, is_backchannel, sentiment
from parley.engine.coaching import CoachingSettings


def neutral(text: str) -> float:
    return 0.0


def metrics(**limits: float) -> ConversationMetrics:
    settings = CoachingSettings.model_validate(limits)
    return ConversationMetrics.from_settings(settings, score=neutral)


def test_talk_time_ratio_and_speaking_rate_per_role() -> None:
    m = metrics()
    m.update("c1", "customer", " ".join(["word"] * 25), 0, 10)
    m.update("r1", "rep", " ".join(["word"] * 90), 11, 41)
    m.update("k1", "coach", "ask about budget", 12, 13)  # a whisper: not part of the conversation
    roles = m.snapshot()["roles"]
    assert roles["customer"]["talk_ratio"] == 0.25 and roles["rep"]["talk_ratio"] == 0.75
    assert roles["customer"]["words_per_minute"] == 150.0 and roles["rep"]["words_per_minute"] == 180.0
    assert roles["coach"]["talk_s"] == 1.0 and roles["coach"]["talk_ratio"] is None


def test_the_longest_monologue_spans_short_pauses_and_backchannels() -> None:
    m = metrics(monologue_s=30)
    assert m.update("r1", "rep", "first part", 0, 12) == []
    assert m.update("c1", "customer", "uh-huh", 12.2, 12.6) == []
    crossings = m.update("r1", "rep", "second part", 13.0, 25)
    assert crossings == []
    [crossing] = m.update("r1", "rep", "third part", 26.0, 31)
    assert (crossing.trigger, crossing.role, crossing.participant_id) == ("long_monologue", "rep", "r1")
    assert crossing.value == pytest.approx(31)
    assert m.update("r1", "rep", "still going", 31.5, 40) == []  # reported once per monologue
    m.update("r1", "rep", "after a real pause", 42.0, 45)  # 2 s gap: a new monologue
    assert m.snapshot()["longest_monologue"] == {"role": "rep", "seconds": 40.0}


def test_a_real_answer_ends_a_monologue() -> None:
    m = metrics(monologue_s=30)
    m.update("r1", "rep", "pitch", 0, 20)
    m.update("c1", "customer", "What about the integrations with our CRM?", 20.5, 23)
    assert m.update("r1", "rep", "more pitch", 23.5, 45) == []
    assert m.snapshot()["longest_monologue"] == {"role": "rep", "seconds": 21.5}


def test_dead_air_is_reported_by_tick_once_per_silence() -> None:
    m = metrics(dead_air_s=5)
    assert m.tick(1.0) == []  # nobody has spoken yet: the call has not started
    m.update("c1", "customer", "So what do you think?", 0, 10)
    assert m.tick(12) == [] and m.snapshot(12)["dead_air"]["silent_for_s"] == 2.0
    [crossing] = m.tick(15.5)
    assert (crossing.trigger, crossing.role, crossing.value) == ("dead_air", "customer", 5.5)
    assert m.tick(17) == []
    m.update("r1", "rep", "Sorry, let me think.", 18, 20)
    assert m.tick(20.5) == []
    assert m.tick(25) != []  # a new silence
    dead = m.snapshot(25)["dead_air"]
    assert dead == {"total_s": 8.0, "longest_s": 8.0, "silent_for_s": 5.0}


def test_someone_speaking_is_not_dead_air() -> None:
    m = metrics(dead_air_s=5)
    m.update("c1", "customer", "Hello?", 0, 1)
    m.speaking("rep", True, 2)
    assert m.tick(10) == []
    m.speaking("rep", False, 11)
    assert m.tick(15) == []
    assert m.tick(16) != []


def test_interruptions_count_for_who_cut_in_whatever_order_finals_arrive() -> None:
    m = metrics()
    m.update("r1", "rep", "Our platform handles every channel and", 0, 6)
    m.update("c1", "customer", "Sorry, can I stop you there?", 4, 6.5)  # starts while the rep speaks
    m.update("c1", "customer", "mm-hmm", 8, 8.3)
    m.update("r1", "rep", "So as I said the onboarding takes two weeks", 7, 12)  # backchannel: no
    # The customer's short final arrives before the rep's long one it cut into.
    m.update("c1", "customer", "Wait, two weeks?", 14, 15)
    m.update("r1", "rep", "and then you are live with everything", 12.5, 16)
    m.update("r1", "rep", "Yes, two weeks from signing.", 16.3, 18)
    m.update("c1", "customer", "Okay so what happens next?", 17.9, 19)  # an overlap this small is turn-taking
    roles = m.snapshot()["roles"]
    assert roles["customer"]["interruptions"] == 2 and roles["rep"]["interruptions"] == 0


def test_sentiment_has_the_right_sign_on_clear_cases() -> None:
    assert sentiment("This is terrible, I'm really angry and disappointed with your service.") < -0.5
    assert sentiment("Great, I love it, thank you so much!") > 0.5
    assert sentiment("...") == 0.0


def test_a_negative_customer_utterance_crosses_the_limit() -> None:
    m = ConversationMetrics.from_settings(CoachingSettings(negative_sentiment=-0.4))
    assert m.update("c1", "customer", "Thanks, that sounds great.", 0, 2) == []
    [crossing] = m.update("c1", "customer", "Honestly this is awful and I'm furious.", 3, 5)
    assert crossing.trigger == "negative_sentiment" and crossing.value < -0.4
    mood = m.snapshot()["roles"]["customer"]["sentiment"]
    assert mood["last"] < -0.4 and mood["mean"] > mood["last"]


def test_backchannels() -> None:
    assert is_backchannel("Uh-huh.") and is_backchannel("yeah, right") and is_backchannel("Mm-hmm")
    assert not is_backchannel("Yeah, but how much?") and not is_backchannel("")


def test_the_snapshot_is_json() -> None:
    m = metrics()
    m.update("c1", "customer", "Hi there", 0.123456, 1.987654)
    m.update("r1", "rep", "Hello!", 2.5, 3.25)
    snapshot = m.snapshot(4.0)
    assert json.loads(json.dumps(snapshot)) == snapshot
    assert snapshot["duration_s"] == 3.13 and snapshot["roles"]["customer"]["talk_s"] == 1.86
