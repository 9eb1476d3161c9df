"""Who picks up when the local Twilio dials a number: scripted callees, loaded from a YAML/JSON scenario.

A scenario maps phone numbers to a ``CalleeScript``. Each call to a number consumes the next of its
``outcomes`` (busy, no-answer, failed or answer); once they run out, the callee answers. An answered
call is picked up by a human or an answering machine (``answered_by``, Twilio's AMD vocabulary:
https://www.twilio.com/docs/voice/answering-machine-detection#webhook-parameters), which then says its
``say`` clips into the call: a human speaks each clip once the agent has spoken and paused, a machine
plays its greeting at once (then a beep, for ``machine_end_beep``). With no clips the line stays silent
until the far end hangs up or ``hang_up_after_s`` passes.

Clips are WAV paths (relative to the scenario file) or audio without words: ``silence:SECONDS``,
``tone:HZ:SECONDS``, ``noise:SECONDS`` and ``beep``.

```yaml
callees:
  "+14155550100":
    outcomes: [busy, answer]
    answered_by: human
    say: [hello.wav, "silence:1", yes_please.wav]
    hang_up_after_s: 30
  "+14155550101":
    answered_by: machine_end_beep
    say: [voicemail_greeting.wav]
```
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import phonenumbers
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from parley.audio.frame import PCM16
from parley.audio.resample import resample
from parley.audio.wav import read_wav

SAMPLE_RATE = 8000
"""Callee audio is kept at the phone line's rate."""

Outcome = Literal["answer", "busy", "no-answer", "failed"]
AnsweredBy = Literal[
    "human",
    "machine_start",
    "machine_end_beep",
    "machine_end_silence",
    "machine_end_other",
    "fax",
    "unknown",
]
MACHINE_ANSWERS = frozenset({"machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other"})

BEEP_S = 0.5
"""The voicemail beep: a 1 kHz tone this long."""
END_SILENCE_S = 2.0
"""``machine_end_silence``: how long the line stays quiet after the greeting before AMD decides."""


class ScenarioError(ValueError):
    """A scenario file or script that cannot be used; the message names the field or file."""


class CalleeScript(BaseModel):
    """How one number behaves when called."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    outcomes: tuple[Outcome, ...] = ()
    """One per call, in order; afterwards the callee answers."""
    answered_by: AnsweredBy = "human"
    say: tuple[str, ...] = ()
    hang_up_after_s: float | None = Field(None, gt=0)
    """The callee hangs up this long after answering (None: only when the other side does)."""
    ring_s: float = Field(0.2, ge=0, le=600)
    """How long the phone rings before it is answered or gives up (the sim's stand-in for Timeout)."""
    amd_s: float = Field(0.4, ge=0, le=120)
    """How long answering machine detection takes to tell a human (or the start of a machine)."""
    reply_gap_s: float = Field(0.8, ge=0, le=30)
    """A human speaks a clip once the agent has been quiet this long after speaking …"""
    wait_for_agent_s: float = Field(8.0, ge=0, le=300)
    """… or after this long without the agent speaking at all."""

    @field_validator("say")
    @classmethod
    def _clips(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            _synthetic(item)  # raises on a malformed silence:/tone:/noise: item
        return value


@dataclass(frozen=True, slots=True)
class CalleePlan:
    """What happens on one particular call."""

    number: str
    outcome: Outcome
    script: CalleeScript
    clips: tuple[PCM16, ...]
    """The ``say`` items as 8 kHz PCM."""

    @property
    def machine(self) -> bool:
        return self.script.answered_by in MACHINE_ANSWERS

    @property
    def greeting_s(self) -> float:
        return sum(len(clip) for clip in self.clips) / SAMPLE_RATE


def normalize_number(number: str) -> str:
    """E.164 for phone numbers (Twilio accepts unformatted US numbers too); other addresses unchanged."""
    if number.startswith(("sip:", "client:")):
        return number
    try:
        parsed = phonenumbers.parse(number, "US")
    except phonenumbers.NumberParseException:
        return number
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


class Callees:
    """The scripts by number and how many calls each number has had (one outcome consumed per call)."""

    def __init__(
        self,
        scripts: dict[str, CalleeScript] | None = None,
        *,
        default: CalleeScript | None = None,
        base_dir: Path | None = None,
    ) -> None:
        self.default = default or CalleeScript()
        self.base_dir = base_dir or Path.cwd()
        self._scripts: dict[str, CalleeScript] = {}
        self._calls: dict[str, int] = {}
        self._audio: dict[str, PCM16] = {}
        for number, script in (scripts or {}).items():
            self.set(number, script)

    def set(self, number: str, script: CalleeScript) -> None:
        """Script ``number`` (tests do this between calls); its outcome count starts again."""
        key = normalize_number(number)
        for item in script.say:
            self._clip(item)  # a missing WAV fails now, not in the middle of a call
        self._scripts[key] = script
        self._calls[key] = 0

    def script_for(self, number: str) -> CalleeScript:
        return self._scripts.get(normalize_number(number), self.default)

    def next_call(self, number: str) -> CalleePlan:
        """The plan for the next call to ``number``, consuming one outcome."""
        key = normalize_number(number)
        script = self._scripts.get(key, self.default)
        index = self._calls.get(key, 0)
        self._calls[key] = index + 1
        outcome: Outcome = script.outcomes[index] if index < len(script.outcomes) else "answer"
        return self.plan(key, outcome, script)

    def plan(self, number: str, outcome: Outcome, script: CalleeScript) -> CalleePlan:
        return CalleePlan(number, outcome, script, tuple(self._clip(item) for item in script.say))

    def _clip(self, item: str) -> PCM16:
        cached = self._audio.get(item)
        if cached is not None:
            return cached
        pcm = _synthetic(item)
        if pcm is None:
            path = Path(item)
            if not path.is_absolute():
                path = self.base_dir / path
            try:
                frame = read_wav(path)
            except (FileNotFoundError, ValueError) as exc:
                raise ScenarioError(f"cannot use clip {item!r}: {exc}") from exc
            pcm = (
                frame.pcm
                if frame.sample_rate == SAMPLE_RATE
                else resample(frame.pcm, frame.sample_rate, SAMPLE_RATE)
            )
        self._audio[item] = pcm
        return pcm


class ScenarioFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    callees: dict[str, CalleeScript] = Field(default_factory=dict)
    default: CalleeScript = Field(default_factory=CalleeScript)


def load_scenario(path: Path) -> Callees:
    """Read a scenario file (YAML or JSON; JSON is YAML) into ``Callees`` with clips resolved next to it."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario {path}: {exc.strerror or exc}") from exc
    try:
        raw = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ScenarioError(f"scenario {path} is not valid YAML/JSON: {exc}") from exc
    try:
        scenario = ScenarioFile.model_validate(raw or {})
    except ValidationError as exc:
        raise ScenarioError(f"scenario {path}: {exc}") from exc
    return Callees(scenario.callees, default=scenario.default, base_dir=path.parent)


def beep() -> PCM16:
    return _tone(1000.0, BEEP_S)


def _synthetic(item: str) -> PCM16 | None:
    """Audio without words, or None when ``item`` is a file path."""
    if item == "beep":
        return beep()
    kind, sep, rest = item.partition(":")
    if not sep or kind not in ("silence", "tone", "noise"):
        return None
    parts = rest.split(":")
    try:
        numbers = [float(part) for part in parts]
    except ValueError as exc:
        raise ScenarioError(f"clip {item!r}: {kind}: takes numbers") from exc
    if kind == "tone":
        if len(numbers) != 2 or not 20 <= numbers[0] <= 3900:
            raise ScenarioError(f"clip {item!r}: write tone:HZ:SECONDS with 20 <= HZ <= 3900")
        return _tone(numbers[0], _seconds(item, numbers[1]))
    if len(numbers) != 1:
        raise ScenarioError(f"clip {item!r}: write {kind}:SECONDS")
    samples = round(_seconds(item, numbers[0]) * SAMPLE_RATE)
    if kind == "silence":
        return np.zeros(samples, np.int16)
    rng = np.random.default_rng(samples)  # the same noise every run
    return (rng.standard_normal(samples) * 2000).clip(-32768, 32767).astype(np.int16)


def _seconds(item: str, value: float) -> float:
    if not 0 < value <= 600:
        raise ScenarioError(f"clip {item!r}: seconds must be within 0..600")
    return value


def _tone(hz: float, seconds: float) -> PCM16:
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (np.sin(2 * np.pi * hz * t) * 8000).astype(np.int16)
