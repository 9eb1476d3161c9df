"""What a phone line adds to a session: keypad digits, spoken announcements, and playout it confirms."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from parley.engine.events import Event, EventType, Timeline, now
from parley.engine.session import Session, SessionOptions
from parley.providers.llm.scripted import ScriptRule
from parley.simulation import Loudspeaker, Microphone
from tests.engine.harness import RATE, agent, speech, stack

LONG = (
    "Our opening hours are nine to five on weekdays, ten to two on Saturdays, and we are closed on "
    "Sundays and public holidays, except in December when we open every day until the twenty third."
)


class DelayedLine(Loudspeaker):
    """A listener that hears everything ``delay_s`` later than the engine scheduled it (a phone network)."""

    def __init__(self, delay_s: float) -> None:
        super().__init__(RATE)
        self.delay_s = delay_s

    def heard_until(self, cut: float) -> float:
        return cut - self.delay_s


@asynccontextmanager
async def running(session: Session) -> AsyncIterator[Session]:
    task = asyncio.create_task(session.run())
    try:
        yield session
    finally:
        session.end("test_done")
        await task


def _of(timeline: Timeline, kind: EventType) -> list[Event]:
    return [e for e in timeline.events if e.type is kind]


async def _until(condition: object, limit_s: float = 10.0) -> None:
    deadline = now() + limit_s
    while not condition():  # type: ignore[operator]
        assert now() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_keypad_digits_reach_the_timeline_and_the_model_as_one_entry() -> None:
    rules = [ScriptRule.say("keypad", "Thanks, I got your account number.")]
    timeline = Timeline()
    session = Session(agent(), stack([], rules), Loudspeaker(RATE), timeline, None, SessionOptions())
    async with running(session):
        for digit in "12#":
            session.press_key(digit)
        await _until(lambda: _of(timeline, EventType.AGENT_REPLY_DONE))
    assert [e.data["digit"] for e in _of(timeline, EventType.DTMF)] == ["1", "2", "#"]
    finals = _of(timeline, EventType.TRANSCRIPT_FINAL)
    assert [(e.data["text"], e.data["source"]) for e in finals] == [("[keypad] 1 2 #", "dtmf")]
    assert [m.content for m in session.context.messages if m.role == "user"] == ["[keypad] 1 2 #"]
    assert "account number" in " ".join(e.data["text"] for e in _of(timeline, EventType.AGENT_TEXT))


async def test_digits_without_a_hash_are_entered_after_a_pause() -> None:
    timeline = Timeline()
    session = Session(agent(), stack([], []), Loudspeaker(RATE), timeline, None, SessionOptions())
    async with running(session):
        session.press_key("4")
        session.press_key("2")
        await asyncio.sleep(0.5)
        assert not _of(timeline, EventType.TRANSCRIPT_FINAL)  # still typing
        await _until(lambda: _of(timeline, EventType.TRANSCRIPT_FINAL))
    assert _of(timeline, EventType.TRANSCRIPT_FINAL)[0].data["text"] == "[keypad] 4 2"


async def test_a_keypad_digit_must_be_one() -> None:
    session = Session(agent(), stack([], []), Loudspeaker(RATE), Timeline(), None, SessionOptions())
    for bad in ("", "12", "x", "é"):
        with pytest.raises(ValueError, match="keypad"):
            session.press_key(bad)


async def test_say_speaks_now_and_can_end_the_session_once_heard() -> None:
    timeline = Timeline()
    speaker = Loudspeaker(RATE)
    session = Session(agent(), stack([], []), speaker, timeline, None, SessionOptions())
    runner = asyncio.create_task(session.run())
    session.say("Hi, this is Parley calling back. Please call us at your convenience.", end_after="voicemail")
    await asyncio.wait_for(runner, 20)
    ended = _of(timeline, EventType.SESSION_ENDED)
    assert ended and ended[0].data["reason"] == "voicemail"
    last = speaker.last_audio_end()
    assert last is not None and ended[0].t >= last  # the whole message played before the end
    assert [m.content for m in session.context.messages if m.role == "assistant"] == [
        "Hi, this is Parley calling back. Please call us at your convenience."
    ]


async def _heard_after_barge_in(output: Loudspeaker) -> str:
    timeline = Timeline()
    session = Session(agent(), stack([], []), output, timeline, None, SessionOptions())
    async with running(session):
        session.say(LONG)
        await _until(lambda: _of(timeline, EventType.AGENT_AUDIO_STARTED))
        await asyncio.sleep(2.0)
        session.interrupt()
        await _until(lambda: _of(timeline, EventType.REPLY_CANCELLED))
    heard: str = _of(timeline, EventType.REPLY_CANCELLED)[0].data["heard_text"]
    assert LONG.startswith(heard)
    return heard


async def test_a_line_that_confirms_playout_decides_what_was_heard() -> None:
    """A phone network plays audio later than the engine sent it: on barge-in the caller heard less."""
    on_time = await _heard_after_barge_in(Loudspeaker(RATE))
    late = await _heard_after_barge_in(DelayedLine(1.0))
    # Tone TTS speaks 40 ms per character: a second behind is about 25 characters (4-5 words) fewer.
    assert len(on_time.split()) - len(late.split()) >= 3


async def test_an_announcement_over_speech_is_not_answered_when_that_speech_ends() -> None:
    """A voicemail is left when answering-machine detection reports the greeting's end, which may come
    before the pause after it was long enough to end a turn here: that turn must not replace it."""
    message = "Hi, this is Parley calling back. Please call us at your convenience."
    timeline = Timeline()
    speaker = Loudspeaker(RATE)
    session = Session(
        agent(), stack(["You have reached Sam."], []), speaker, timeline, None, SessionOptions()
    )
    runner = asyncio.create_task(session.run())
    async with Microphone(session, RATE) as mic:
        greeting = asyncio.create_task(mic.say(speech(1.0).pcm, RATE))
        await _until(lambda: _of(timeline, EventType.SPEECH_STARTED))
        session.say(message, end_after="voicemail")  # the greeting still has most of a second to go
        await greeting
        await asyncio.wait_for(runner, 20)
    assert _of(timeline, EventType.SESSION_ENDED)[0].data["reason"] == "voicemail"
    assert _of(timeline, EventType.SPEECH_STOPPED), "the greeting ended while the message played"
    assert not _of(timeline, EventType.TRANSCRIPT_FINAL) and not _of(timeline, EventType.REPLY_CANCELLED)
    assert [m.content for m in session.context.messages] == [message]
