"""The scripted recognizer drives fast conversation tests, so it must be exact and loud when misused."""

from __future__ import annotations

import numpy as np
import pytest

from parley.providers.asr.base import SpeechRecognizer
from parley.providers.asr.scripted import ScriptedRecognizer, ScriptExhaustedError


def seconds(duration: float, rate: int = 16_000) -> np.ndarray:
    return np.zeros(round(duration * rate), dtype=np.int16)


async def test_finals_follow_the_script_with_audio_seconds() -> None:
    asr = ScriptedRecognizer(["hello there", "book a table"])
    stream = asr.open_stream()
    await stream.push(seconds(0.5))
    await stream.push(seconds(0.25))
    first = await stream.finalize()
    assert (first.text, first.is_final, first.audio_seconds) == ("hello there", True, 0.75)
    await stream.push(seconds(1.0))
    second = await stream.finalize()
    assert (second.text, second.audio_seconds) == ("book a table", 1.0)
    assert [t.text for t in asr.heard] == ["hello there", "book a table"]
    assert asr.remaining == 0


async def test_interim_reveals_one_word_per_step_of_audio() -> None:
    asr = ScriptedRecognizer(["please book a table"], seconds_per_word=0.3)
    stream = asr.open_stream()
    assert (await stream.interim()).text == ""
    await stream.push(seconds(0.3))
    assert (await stream.interim()).text == "please"
    await stream.push(seconds(0.3))
    interim = await stream.interim()
    assert (interim.text, interim.is_final, interim.audio_seconds) == ("please book", False, 0.6)
    await stream.push(seconds(5.0))
    assert (await stream.interim()).text == "please book a table"
    assert asr.remaining == 1  # interims never consume the script


async def test_finalize_resets_the_stream() -> None:
    asr = ScriptedRecognizer(["one two three", "four"], seconds_per_word=0.1)
    stream = asr.open_stream()
    await stream.push(seconds(0.3))
    await stream.finalize()
    interim = await stream.interim()
    assert (interim.text, interim.audio_seconds) == ("", 0.0)


async def test_running_out_of_script_says_so() -> None:
    asr = ScriptedRecognizer(["only line"])
    stream = asr.open_stream()
    await stream.finalize()
    with pytest.raises(ScriptExhaustedError, match="ran out of lines"):
        await stream.finalize()


async def test_streams_share_one_script_in_conversation_order() -> None:
    asr = ScriptedRecognizer(["first", "second"])
    a, b = asr.open_stream(), asr.open_stream()
    assert (await b.finalize()).text == "first"
    assert (await a.finalize()).text == "second"


async def test_push_rejects_float_audio() -> None:
    stream = ScriptedRecognizer(["x"]).open_stream()
    with pytest.raises(ValueError, match="int16"):
        await stream.push(np.zeros(10, dtype=np.float32))


def test_satisfies_the_protocol() -> None:
    asr: SpeechRecognizer = ScriptedRecognizer([], sample_rate=8000)
    assert asr.sample_rate == 8000
