"""Scenario files: who answers which number, how, and what they say."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from parley.audio.wav import write_wav
from parley.twilio_sim.callee import Callees, CalleeScript, ScenarioError, load_scenario


def test_a_yaml_scenario_with_clips_next_to_it(tmp_path: Path) -> None:
    write_wav(tmp_path / "hello.wav", (np.ones(16000) * 1000).astype(np.int16), 16000)
    (tmp_path / "calls.yaml").write_text(
        """
callees:
  "(415) 555-0100":
    outcomes: [busy, no-answer]
    say: [hello.wav, "silence:0.5", "tone:440:0.25"]
    hang_up_after_s: 20
  "+14155550101":
    answered_by: machine_end_beep
    say: [beep]
"""
    )
    callees = load_scenario(tmp_path / "calls.yaml")
    outcomes = [callees.next_call("+14155550100").outcome for _ in range(3)]
    assert outcomes == ["busy", "no-answer", "answer"]  # one per call, then it answers
    plan = callees.next_call("+14155550100")
    assert [len(clip) for clip in plan.clips] == [8000, 4000, 2000]  # all at 8 kHz
    assert plan.script.hang_up_after_s == 20
    machine = callees.next_call("+14155550101")
    assert machine.machine and machine.greeting_s == 0.5
    stranger = callees.next_call("+14155550199")
    assert (stranger.outcome, stranger.script.answered_by, stranger.clips) == ("answer", "human", ())


def test_a_json_scenario_and_a_default(tmp_path: Path) -> None:
    path = tmp_path / "calls.json"
    path.write_text('{"default": {"outcomes": ["failed"]}, "callees": {}}')
    assert load_scenario(path).next_call("+14155550100").outcome == "failed"


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("callees: {'+14155550100': {say: [missing.wav]}}", "missing.wav"),
        ("callees: {'+14155550100': {say: ['tone:9000:1']}}", "tone:HZ:SECONDS"),
        ("callees: {'+14155550100': {outcomes: [voicemail]}}", "outcomes"),
        ("callees: {'+14155550100': {answred_by: human}}", "answred_by"),
        ("callees: [1, 2", "not valid YAML"),
    ],
)
def test_scenario_mistakes_are_named(tmp_path: Path, text: str, complaint: str) -> None:
    path = tmp_path / "calls.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError, match=complaint):
        load_scenario(path)


def test_scripting_a_number_restarts_its_outcomes() -> None:
    callees = Callees()
    callees.set("+14155550100", CalleeScript(outcomes=("busy",)))
    assert callees.next_call("+14155550100").outcome == "busy"
    assert callees.next_call("+14155550100").outcome == "answer"
    callees.set("+14155550100", CalleeScript(outcomes=("busy",)))
    assert callees.next_call("+14155550100").outcome == "busy"
