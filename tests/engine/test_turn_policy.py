"""How long a pause must last: the evidence thresholds and the pauses learned from the caller."""

from __future__ import annotations

import pytest

from parley.engine.agent import EndpointingSettings
from parley.engine.turns import PAUSE_FACTOR, TurnPolicy

SETTINGS = EndpointingSettings(min_silence_ms=300, unsure_silence_ms=800, max_silence_ms=1400)


def test_evidence_picks_the_silence() -> None:
    policy = TurnPolicy(SETTINGS)
    assert policy.required_silence(0.9) == pytest.approx(0.3)
    assert policy.required_silence(0.5) == pytest.approx(0.8)
    assert policy.required_silence(0.1) == pytest.approx(1.4)


def test_a_caller_who_went_on_after_a_pause_gets_that_long_before_any_answer() -> None:
    policy = TurnPolicy(SETTINGS)
    policy.observe_pause(0.45)
    assert policy.required_silence(0.95) == pytest.approx(0.45 * PAUSE_FACTOR)
    policy.observe_pause(0.35)  # a shorter pause later does not shorten the wait
    assert policy.required_silence(0.95) == pytest.approx(0.45 * PAUSE_FACTOR)
    assert policy.required_silence(0.1) == pytest.approx(1.4), "an unfinished turn waits as before"


def test_the_learned_wait_never_exceeds_an_unsure_turns() -> None:
    policy = TurnPolicy(SETTINGS)
    policy.observe_pause(2.0)
    assert policy.required_silence(0.95) == pytest.approx(0.8)
    assert policy.required_silence(0.5) == pytest.approx(0.8)


def test_learning_can_be_turned_off() -> None:
    policy = TurnPolicy(SETTINGS.model_copy(update={"learn_pauses": False}))
    policy.observe_pause(0.6)
    assert policy.required_silence(0.95) == pytest.approx(0.3)


def test_without_semantics_every_turn_waits_the_unsure_silence() -> None:
    policy = TurnPolicy(SETTINGS.model_copy(update={"semantic": False}))
    assert policy.required_silence(0.99) == pytest.approx(0.8)
