"""``send_dtmf`` on a phone leg: the keys reach the far end as keypad tones, after what the agent said."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import numpy as np
import pytest

from parley.audio.codecs import ulaw_decode
from parley.audio.frame import AudioFrame
from parley.transports.twilio_media import TwilioMediaLeg, dtmf_tones
from parley.transports.twilio_protocol import ULAW_RATE
from tests.transports.test_twilio_media import STREAM, FakeSession, echo

LOW = {697.0: "123A", 770.0: "456B", 852.0: "789C", 941.0: "*0#D"}
HIGH = {1209.0: "147*", 1336.0: "2580", 1477.0: "369#", 1633.0: "ABCD"}


def power(block: np.ndarray, freq: float, rate: int) -> float:
    t = np.arange(len(block)) / rate
    return float(abs(np.sum(block * np.exp(-2j * np.pi * freq * t))))


def keys_heard(pcm: np.ndarray, rate: int) -> str:
    """The keys in ``pcm`` as a receiver decodes them: the strongest low and high tone of each burst
    (a burst ends at 10 ms of silence)."""
    loud = np.abs(pcm.astype(np.float64)) > 1000
    keys: list[str] = []
    i = 0
    while i < len(pcm):
        if not loud[i]:
            i += 1
            continue
        j, quiet = i, 0
        while j < len(pcm) and quiet < rate // 100:
            quiet = 0 if loud[j] else quiet + 1
            j += 1
        block = pcm[i : j - quiet].astype(np.float64)
        if len(block) > rate // 40:
            low = max(LOW, key=lambda f: power(block, f, rate))
            high = max(HIGH, key=lambda f: power(block, f, rate))
            keys.append(next(iter(set(LOW[low]) & set(HIGH[high]))))
        i = j
    return "".join(keys)


def test_tones_decode_back_to_the_keys() -> None:
    assert keys_heard(dtmf_tones("204#*9", ULAW_RATE), ULAW_RATE) == "204#*9"
    with pytest.raises(ValueError, match="not a keypad key"):
        dtmf_tones("1x", ULAW_RATE)


async def test_the_leg_plays_the_keys_after_the_agents_words_and_waits_until_heard() -> None:
    sent: list[dict[str, Any]] = []
    leg: TwilioMediaLeg

    def send(text: str) -> None:
        message = json.loads(text)
        sent.append(message)
        if message["event"] == "mark":  # Twilio plays everything at once and echoes each mark
            loop.call_soon(leg.on_text, echo(message["mark"]["name"]))

    loop = asyncio.get_running_loop()
    leg = TwilioMediaLeg(FakeSession(), STREAM, send, lambda code, reason: None, drain_timeout_s=2)
    words = AudioFrame(np.full(160, 1000, np.int16), ULAW_RATE, 0.0)
    leg.queue_audio(0, words)
    await leg.send_digits("12#")
    media = [m for m in sent if m["event"] == "media"]
    pcm = np.concatenate([ulaw_decode(base64.b64decode(m["media"]["payload"])) for m in media[1:]])
    assert keys_heard(pcm, ULAW_RATE) == "12#"
    assert sent[-1]["event"] == "mark", "the tones end with a mark: the tool returns once they were heard"


async def test_a_leg_that_is_gone_refuses_keys() -> None:
    leg = TwilioMediaLeg(FakeSession(), STREAM, lambda text: None, lambda code, reason: None)
    leg.hung_up()
    with pytest.raises(ConnectionError, match="call is over"):
        await leg.send_digits("1")
