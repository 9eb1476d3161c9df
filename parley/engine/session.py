"""A live conversation: hear (VAD, endpointing, ASR), think and speak (a Reply), with barge-in.

Turn-taking works by speculation. At a short pause the transcript is finalized and a reply starts at
once, but its audio is held until the pause has lasted as long as the turn policy requires. If the user
carries on, the speculative reply is dropped unheard; if not, its first audio is usually ready already.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from dataclasses import dataclass
from typing import Any

import structlog

from parley.audio.endpointing import Boundary, Endpointer
from parley.audio.frame import AudioFrame
from parley.audio.rechunk import Rechunker
from parley.audio.resample import Resampler
from parley.engine.agent import AgentConfig
from parley.engine.context import ConversationContext, grounding_examples
from parley.engine.conversation import Answering
from parley.engine.events import Event, EventType, TimelineSink, now
from parley.engine.grounding import GroundingCheck
from parley.engine.hearing import ASR_RATE, Hearing
from parley.engine.keypad import KeypadEntry, check_digit
from parley.engine.language import AUTO, language_note
from parley.engine.options import EngineStack, SessionOptions
from parley.engine.read_ahead import PromptReader
from parley.engine.reply import Reply, ReplyDeps
from parley.engine.state import TURN_TRANSITIONS, InvalidTransition, SessionState, TurnState
from parley.engine.tool_requests import ToolRequests
from parley.engine.tools import ToolRegistry
from parley.engine.transport import AudioOutput, ConfirmsPlayout
from parley.engine.turn_text import real_words
from parley.engine.turns import TurnPolicy
from parley.engine.variables import render_agent
from parley.providers.embeddings.recent import RecentEmbeddings
from parley.providers.events import ProviderEvent, bind_reporter
from parley.providers.llm.base import ChatMessage

log = structlog.get_logger("parley.engine.session")

__all__ = ["EngineStack", "Session", "SessionOptions"]


@dataclass(slots=True)
class _Candidate:
    """A pause that may end the user's turn, with the reply prepared speculatively for it."""

    speech_end: float
    task: asyncio.Task[None] | None = None
    text: str = ""
    audio_seconds: float = 0.0
    recognition: int | None = None
    """The number of the utterance whose transcript is ``text`` (see ``engine/hearing.py``)."""
    reply: Reply | None = None
    required_silence: float | None = None
    completeness: float | None = None
    acoustic: float | None = None


class Session:
    def __init__(
        self,
        agent: AgentConfig,
        stack: EngineStack,
        output: AudioOutput,
        timeline: TimelineSink,
        tools: ToolRegistry | None = None,
        options: SessionOptions | None = None,
        session_id: str | None = None,
    ) -> None:
        self.id = session_id or uuid.uuid4().hex[:12]
        self.agent = agent
        # Shared provider chains report their failovers and breaker changes to this call's timeline.
        self.stack = stack = dataclasses.replace(
            stack,
            recognizer=bind_reporter(stack.recognizer, self._provider_event),
            llm=bind_reporter(stack.llm, self._provider_event),
            tts=bind_reporter(stack.tts, self._provider_event),
        )
        self.output = output
        self.timeline = timeline
        self.options = options or SessionOptions()
        self.tools = tools or ToolRegistry()
        self._reply_settings = dataclasses.replace(
            self.options.reply,
            max_tokens=agent.max_reply_tokens,
            temperature=agent.temperature,
            max_tool_rounds=agent.max_tool_rounds,
            error_message=agent.error_message,
            unknown_answer=agent.unknown_answer,
            goodbye_message=agent.goodbye_message,
            detail_question=agent.detail_question,
        )
        self.agent = agent = render_agent(agent, self.options.variables)  # {{caller.name}} … of this call
        self.context = ConversationContext(
            agent.system_prompt,
            agent.knowledge,
            agent.context_token_budget,
            stack.llm.count_tokens,
            documents=self.options.knowledge,
            grounded=agent.grounded,
            examples=grounding_examples(self.tools.closing_tool(), self.tools.actions()),
            language_note=language_note(agent.language),
        )
        self._reader = PromptReader(stack.llm, self.context, self.tools, self._spawn, self.id)
        """Reads the next request's prompt while the caller talks (``engine/read_ahead.py``)."""
        self._tts = stack.tts
        """The voice replies speak with: the stack's, until a detected language brings its own."""
        # The checks embed the caller's message and the tool descriptions more than once: share them.
        embedder = RecentEmbeddings(stack.embedder) if stack.embedder is not None else None
        self._grounding = (
            GroundingCheck(
                embedder,
                agent.knowledge,
                passages=self._passages,
                actions=[spec.description for spec in self.tools.specs()],
                instructions=agent.system_prompt,
            )
            if embedder is not None and self.context.grounded
            else None
        )
        self._requests = (
            ToolRequests(embedder, self.tools.specs())
            if embedder is not None and self._grounding is not None
            else None
        )
        ep = agent.endpointing
        self._endpointer = Endpointer(
            ep.start_threshold, ep.stop_threshold, ep.min_speech_ms / 1000, ep.pause_ms / 1000
        )
        self._policy = TurnPolicy(ep, stack.turn_model)
        self._vad = stack.vad_factory()
        self._rechunker = Rechunker(self._vad.frame_samples)
        self._resampler: Resampler | None = None
        self._input_rate: int | None = None
        self._inbound: asyncio.Queue[AudioFrame | None] = asyncio.Queue(self.options.inbound_max_frames)
        self._turn = TurnState.IDLE
        """Who holds the floor; changed only by ``_turn_to`` (see ``engine/state.py``)."""
        self._hearing = Hearing(
            stack.recognizer,
            # The caller's language: the agent's, or for ``auto`` the one heard on the first turn.
            language=None if agent.language == AUTO else agent.language,
            frame_samples=self._vad.frame_samples,
            interim_interval_s=self.options.interim_interval_s,
            emit=self._emit,
            report=self._provider_event,
            spawn=self._spawn,
            on_interim=self._on_interim,
            session_id=self.id,
        )
        self._candidate: _Candidate | None = None
        self._reply: Reply | None = None
        self._barge_in_continues_turn = False
        self._barge_in_pause = 0.0
        """Set at a barge-in: the caller only paused, so their words join the turn the agent cut in on."""
        self._committed_completeness: float | None = None
        """How finished the last committed turn was judged (``turn.resumed`` reports it on a cut-in)."""
        self._end_reason: str | None = None
        self._dropped_frames = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reply_tasks: set[asyncio.Task[None]] = set()
        """Every reply ever started (committed or speculative), so none outlives the session."""
        self._keypad = KeypadEntry(lambda entry: self._user_message(entry, "dtmf"), self._spawn)
        self._handed_over_to: str | None = None
        """Who has the call while a person took it over: the agent hears and remembers, and answers
        nobody, until ``take_back``."""

    # --- the transport's side -----------------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        """The public state (what clients and the page show)."""
        return self._turn.public

    @property
    def turn(self) -> TurnState:
        """The turn state the engine works by."""
        return self._turn

    @property
    def idle(self) -> bool:
        """Nobody is talking and nothing is pending: no user speech, no turn being judged, no reply."""
        return self._turn in (TurnState.LISTENING, TurnState.ENDED)

    @property
    def answering(self) -> Answering | None:
        """The committed reply under way (a speculative one is not: it may be dropped unheard)."""
        reply = self._reply
        if reply is None:
            return None
        asked = reply.user_message
        return Answering(reply.id, asked.content if asked is not None else None)

    def feed_audio(self, frame: AudioFrame) -> None:
        """Queue inbound audio without blocking; on overflow the oldest frame is dropped and reported."""
        if self._end_reason is not None:
            return
        if self._inbound.full():
            self._inbound.get_nowait()
            self._dropped_frames += 1
            if self._dropped_frames in (1, 10) or self._dropped_frames % 100 == 0:
                self._emit(EventType.INPUT_OVERFLOW, dropped_frames=self._dropped_frames)
        self._inbound.put_nowait(frame)

    def send_text(self, text: str) -> None:
        """A typed user message: it interrupts whatever the agent is saying and is answered at once."""
        self._user_message(text, "text")

    def press_key(self, digit: str) -> None:
        """A keypad digit (DTMF). Each is on the timeline at once; an entry (digits a short pause apart, or
        up to ``#``) reaches the model as one user message, ``[keypad] 1 2 3 #``."""
        check_digit(digit)
        if self._end_reason is not None:
            return
        self._emit(EventType.DTMF, digit=digit)
        self._keypad.press(digit)

    def say(self, text: str, *, end_after: str | None = None) -> None:
        """Speak ``text`` now, over whatever was being said; with ``end_after``, end the session with that
        reason once it was heard (a voicemail left, a goodbye)."""
        text = text.strip()
        if not text or self._end_reason is not None:
            return
        self._take_the_floor(reason="say")
        reply = Reply(self._reply_deps(), canned_text=text)
        reply.end_after = end_after
        self._commit_reply(reply, speech_end=now())

    def _user_message(self, text: str, source: str) -> None:
        text = text.strip()
        if not text or self._end_reason is not None:
            return
        if self._handed_over_to is not None:
            self._emit(EventType.TRANSCRIPT_FINAL, text=text, source=source)
            self.context.add_user(text)
            return
        self._take_the_floor(reason=f"{source}_input")
        self._emit(EventType.TRANSCRIPT_FINAL, text=text, source=source)
        # The last user turn is now typed, not spoken: speech that continues it joins its text, and the
        # audio of an earlier spoken turn must not be heard again in its place, nor its verdict reported.
        self._hearing.forget_committed()
        self._committed_completeness = None
        self._commit_reply(Reply(self._reply_deps(), ChatMessage("user", text)), speech_end=now())

    def _take_the_floor(self, reason: str) -> None:
        """Whatever was said or being judged gives way: the reply stops, a pending turn is dropped.

        The caller must commit a reply next. Speech under way is talked over by it (an answering
        machine's greeting under an announcement, a keypad tone, words spoken while typing): its end
        must not start a reply that supersedes this one, nor its audio open the next turn.
        """
        self._stop_reply(reason=reason)
        self._drop_candidate()
        self._hearing.clear_turn()
        if self._endpointer.in_speech:
            self._hearing.start_afresh()

    def interrupt(self) -> None:
        """An explicit interrupt (a button): the agent stops, keeps only what was heard, and listens."""
        if self._reply is None:
            return
        self._stop_reply(reason="interrupt")
        self._turn_to(self._floor_without_reply())

    # --- supervision ------------------------------------------------------------------------------

    @property
    def handed_over(self) -> bool:
        return self._handed_over_to is not None

    def hand_over(self, to: str) -> None:
        """A person (``to``: who, for the timeline) takes the call over, as a supervisor who barges in does.

        What the agent is saying stops at once. Until ``take_back`` the caller's turns are transcribed and
        kept in the conversation, so the agent knows what was said when it gets the call back, but they
        are not answered; typed input and keypad entries neither.
        """
        if self._end_reason is not None or self._handed_over_to is not None:
            return
        self._handed_over_to = to
        self._emit(EventType.HANDOVER_STARTED, to=to)
        candidate = self._candidate
        if candidate is not None and candidate.reply is not None:
            if candidate.reply.task is not None:
                candidate.reply.task.cancel()
            candidate.reply = None
        if self._reply is not None:
            self._stop_reply(reason="handed_over")
            self._turn_to(self._floor_without_reply())

    def take_back(self) -> None:
        """The agent has the call again: from the caller's next turn (or the one under way) it answers."""
        if self._handed_over_to is None:
            return
        self._emit(EventType.HANDOVER_ENDED, by=self._handed_over_to)
        self._handed_over_to = None
        self._maybe_commit()  # a turn still waiting out its silence is answered

    def add_note(self, text: str, *, kind: str, by: str = "supervisor") -> None:
        """A supervisor's words for the agent: ``whisper`` (guidance the caller did not hear) or ``said``
        (what the supervisor told the caller while they had the call). Heard from the next reply on."""
        text = " ".join(text.split())
        if not text or self._end_reason is not None:
            return
        if kind == "whisper":
            note = f"Your supervisor tells you privately (the caller cannot hear this): {text}"
        elif kind == "said":
            note = f'Your supervisor joined the call and said to the caller: "{text}"'
        else:
            raise ValueError(f"a supervisor note is 'whisper' or 'said', not {kind!r}")
        self.context.add_note(note)
        self._emit(EventType.SUPERVISOR_NOTE, kind=kind, by=by, text=text)

    def end(self, reason: str = "hangup") -> None:
        if self._end_reason is None:
            self._end_reason = reason
            if self._inbound.full():  # the end must get through even when audio is backed up
                self._inbound.get_nowait()
            self._inbound.put_nowait(None)

    # --- main loop ----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until ``end()``; every task the session started is finished before this returns."""
        spoken = (
            {"language": self.agent.language, "voice": self.stack.voice}
            if self.agent.language != "en"
            else {}
        )
        self._emit(EventType.SESSION_STARTED, agent=self.agent.name, **spoken)
        if self._turn is TurnState.IDLE:  # not when something was said before the session ran
            self._turn_to(TurnState.LISTENING)
        if self.agent.first_message:
            self._commit_reply(
                Reply(self._reply_deps(), canned_text=self.agent.first_message), speech_end=now()
            )
        try:
            while (frame := await self._inbound.get()) is not None:
                await self._hear(frame)
        finally:
            await self._shutdown()

    async def _shutdown(self) -> None:
        self._drop_candidate()
        if self._reply is not None:
            self._stop_reply(reason="session_ended")
        tasks = [*self._tasks, *self._reply_tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._hearing.aclose()
        self._turn_to(TurnState.ENDED)
        self._emit(EventType.SESSION_ENDED, reason=self._end_reason or "closed")

    # --- hearing ------------------------------------------------------------------------------------

    async def _hear(self, frame: AudioFrame) -> None:
        if frame.sample_rate != self._input_rate:
            self._input_rate = frame.sample_rate
            self._resampler = (
                Resampler(frame.sample_rate, ASR_RATE) if frame.sample_rate != ASR_RATE else None
            )
            self._rechunker.reset()
        pcm = self._resampler.process(frame.pcm) if self._resampler else frame.pcm
        for chunk in self._rechunker.push_frame(AudioFrame(pcm, ASR_RATE, frame.timestamp)):
            await self._hear_chunk(chunk)

    async def _hear_chunk(self, chunk: AudioFrame) -> None:
        probability = self._vad.probability(chunk.pcm)
        boundary = self._endpointer.update(probability, chunk.timestamp, chunk.duration)
        if boundary is not None and boundary.kind is Boundary.STARTED:
            self._hearing.keep_outside(chunk.pcm, probability)
            await self._on_speech_started(boundary.at)
        elif self._endpointer.in_speech or boundary is not None:
            if self._turn.hears_turn:
                await self._hearing.add(chunk.pcm)
            if boundary is not None:
                self._on_pause(boundary.at)
        elif self._candidate is not None:  # the caller paused; their turn is not over yet
            self._hearing.add_pause(chunk.pcm)
            self._maybe_commit()
        else:
            self._hearing.keep_outside(chunk.pcm, probability)
            self._maybe_commit()

    async def _on_speech_started(self, onset: float) -> None:
        self._emit(EventType.SPEECH_STARTED, at=onset)
        if self._candidate is not None:  # the caller carries on after a pause (maybe over a held reply)
            paused = onset - self._candidate.speech_end
            judged = self._candidate.completeness
            self._policy.observe_pause(paused)
            self._drop_candidate()
            self._emit(
                EventType.TURN_RESUMED,
                at=onset,
                pause_ms=round(paused * 1000),
                completeness=None if judged is None else round(judged, 3),
            )
            await self._hearing.restart()
            if self._turn is TurnState.USER_PAUSED:
                self._turn_to(TurnState.USER_SPEAKING)
        elif self._turn.agent_holds_floor and self._reply is not None:
            if not self.agent.interruption.enabled:
                return  # talked over: this speech is no turn
            reply = self._reply
            reply.pause()
            paused_for = onset - (reply.speech_end or onset)
            self._barge_in_pause = paused_for
            heard = onset - reply.first_audio_at if reply.first_audio_at is not None else 0.0
            settings = self.agent.interruption
            self._barge_in_continues_turn = (
                paused_for <= settings.merge_window_ms / 1000 and heard <= settings.merge_heard_ms / 1000
            )
            if not self._barge_in_continues_turn:
                self._hearing.forget_committed()
            self._emit(
                EventType.BARGE_IN,
                at=onset,
                reply_id=reply.id,
                latency_ms=round((now() - onset) * 1000, 1),
            )
            # Before the await: whatever happens meanwhile (the reply ends) sees a held reply.
            self._turn_to(TurnState.INTERRUPTED)
            await self.output.clear()
        elif self._turn is TurnState.LISTENING:
            self._hearing.forget_committed()
            self._turn_to(TurnState.USER_SPEAKING)
        # A turn the agent cut in on keeps all of the pause since (it is heard again whole); over the
        # agent's voice, faint frames may be its echo, so only the plain pre-roll joins.
        barging = self._turn is TurnState.INTERRUPTED
        await self._hearing.add_preroll(whole=barging and self._barge_in_continues_turn, soft=not barging)

    def _on_interim(self, text: str) -> None:
        """Words heard over a held reply confirm the barge-in before the caller even pauses. Words of a
        turn on an open floor are read ahead into the model's prompt."""
        if self._turn is TurnState.INTERRUPTED and self._has_real_words(text):
            self._confirm_barge_in()
        elif self._turn is TurnState.USER_SPEAKING and self._handed_over_to is None:
            self._reader.read(self._hearing.with_earlier_words(text.strip()))

    def _on_pause(self, speech_end: float) -> None:
        self._emit(EventType.SPEECH_STOPPED, at=speech_end)
        if not self._turn.hears_turn:  # talked-over speech ended: nothing to answer
            if self._turn is TurnState.TALKED_OVER:
                self._turn_to(TurnState.LISTENING)
            return
        candidate = _Candidate(speech_end)
        candidate.task = self._spawn(self._evaluate(candidate))
        self._candidate = candidate
        if self._turn is TurnState.USER_SPEAKING:
            self._turn_to(TurnState.USER_PAUSED)

    async def _evaluate(self, candidate: _Candidate) -> None:
        """Finalize the transcript at a pause, start the reply speculatively, and size the silence."""
        audio = self._hearing.audio()
        acoustic = asyncio.ensure_future(self._policy.acoustic(audio))  # in parallel with the ASR
        try:
            await self._hearing.catch_up()  # a merge since the last chunk: the stream lacks the turn's front
            heard = await self._hearing.finalize()
            if heard is None:
                self._candidate = None
                self._ask_to_repeat(candidate.speech_end)
                return
            final, candidate.recognition = heard
            text = final.text.strip()
            if self._hearing.language is None and text and final.language:
                await self._adopt_language(final.language, final.language_probability)
            candidate.text, candidate.audio_seconds = text, len(audio) / ASR_RATE
            if self._turn is TurnState.INTERRUPTED:
                if not self._has_real_words(text):
                    self._dismiss_barge_in(text)
                    self._candidate = None
                    return
                self._confirm_barge_in()
                if await self._hearing.catch_up():  # it continues the turn the agent cut in on: hear it whole
                    whole = await self._hearing.finalize()
                    if whole is not None and whole[0].text.strip():
                        text, candidate.recognition = whole[0].text.strip(), whole[1]
            if not text:
                self._candidate = None
                self._hearing.clear_turn()
                self._turn_to(TurnState.LISTENING)
                return
            text = self._hearing.with_earlier_words(text)
            candidate.text = text
            self._emit(EventType.TRANSCRIPT_INTERIM, text=text, stable=True)
            if self._handed_over_to is None:  # nothing is answered while a person has the call
                candidate.reply = Reply(self._reply_deps(), ChatMessage("user", text))
                self._start(candidate.reply)
            candidate.acoustic = await acoustic
            candidate.completeness = self._policy.completeness(text, candidate.acoustic)
        finally:
            acoustic.cancel()
        candidate.required_silence = self._policy.required_silence(candidate.completeness)
        self._maybe_commit()

    def _maybe_commit(self) -> None:
        candidate = self._candidate
        if candidate is None or candidate.required_silence is None:
            return
        if self._endpointer.silence < candidate.required_silence or self._endpointer.starting:
            return  # a caller whose voice is just coming back is not answered over (it was a pause)
        if candidate.reply is None and self._handed_over_to is None:  # the agent got the call back
            candidate.reply = Reply(self._reply_deps(), ChatMessage("user", candidate.text))
            self._start(candidate.reply)
        self._candidate = None
        self._emit(
            EventType.TRANSCRIPT_FINAL,
            text=candidate.text,
            audio_seconds=round(candidate.audio_seconds, 3),
            source="speech",
            recognition=candidate.recognition,
        )
        self._emit(
            EventType.TURN_ENDED,
            speech_end=candidate.speech_end,
            completeness=candidate.completeness,
            acoustic=candidate.acoustic,
            required_silence_ms=round(candidate.required_silence * 1000),
            waited_ms=round((now() - candidate.speech_end) * 1000, 1),
        )
        self._hearing.commit_turn()
        self._committed_completeness = candidate.completeness
        if candidate.reply is None:  # a person has the call: the turn is remembered, not answered
            self.context.add_user(candidate.text)
            self._turn_to(self._floor_without_reply())
            return
        self._commit_reply(candidate.reply, candidate.speech_end)

    def _ask_to_repeat(self, speech_end: float) -> None:
        """The turn could not be heard: ask the caller to say it again rather than go silent."""
        message = self.agent.error_message
        if not message:  # nothing to say: a held reply carries on, otherwise the floor is open again
            if self._turn is TurnState.INTERRUPTED:
                self._dismiss_barge_in("")
            else:
                self._hearing.clear_turn()
                self._turn_to(self._floor_without_reply())
            return
        self._take_the_floor(reason="asr_failed")
        self._commit_reply(Reply(self._reply_deps(), canned_text=message), speech_end)

    # --- barge-in -----------------------------------------------------------------------------------

    def _has_real_words(self, text: str) -> bool:
        settings = self.agent.interruption
        return len(real_words(text, settings.backchannels)) >= max(1, settings.min_words)

    def _confirm_barge_in(self) -> None:
        if self._turn is not TurnState.INTERRUPTED:
            return
        self._stop_reply(reason="barge_in")
        self._turn_to(self._floor_without_reply())
        if self._barge_in_continues_turn:
            # The agent started answering during what was only a pause: the user's words so far and
            # these new ones are one turn, and the barely started answer is forgotten.
            earlier = self.context.take_back_last_user_turn() or ""
            self._hearing.rejoin_committed(earlier)  # heard again whole with the new words at the next pause
            judged = self._committed_completeness
            self._policy.observe_pause(self._barge_in_pause)
            self._emit(
                EventType.TURN_RESUMED,
                merged_with=earlier,
                pause_ms=round(self._barge_in_pause * 1000),
                completeness=None if judged is None else round(judged, 3),
            )

    def _dismiss_barge_in(self, text: str) -> None:
        """Noise or a backchannel: the agent carries on where it stopped."""
        self._hearing.clear_turn()
        self._emit(EventType.BARGE_IN_DISMISSED, text=text)
        if self._reply is not None:
            self._reply.resume()
            self._turn_to(TurnState.SPEAKING if self._reply.playing else TurnState.THINKING)

    # --- replies ------------------------------------------------------------------------------------

    def _passages(self, question: str) -> list[str]:
        return [p.text for p in self.context.retrieve(question)]

    def _reply_deps(self) -> ReplyDeps:
        return ReplyDeps(
            self.stack.llm,
            self._tts,
            self.tools,
            self.context,
            self.output,
            self._emit,
            self._reply_settings,
            self._on_audio_started,
            self._grounding,
            self._requests,
        )

    def _commit_reply(self, reply: Reply, speech_end: float) -> None:
        self._stop_reply(reason="superseded")
        self._reply = reply
        if reply.task is None:
            self._start(reply)
        assert reply.task is not None
        reply.task.add_done_callback(lambda _: self._on_reply_done(reply))
        reply.speech_end = speech_end
        self._turn_to(TurnState.THINKING)
        reply.commit()

    def _start(self, reply: Reply) -> None:
        task = reply.start()
        self._reply_tasks.add(task)
        task.add_done_callback(self._reply_tasks.discard)

    def _on_audio_started(self, reply: Reply) -> None:
        if reply is not self._reply or reply.first_audio_at is None:
            return
        speech_end = reply.speech_end if reply.speech_end is not None else reply.first_audio_at
        self._emit(
            EventType.AGENT_AUDIO_STARTED,
            reply_id=reply.id,
            at=reply.first_audio_at,
            v2v_ms=round((reply.first_audio_at - speech_end) * 1000, 1),
        )
        if self._turn is TurnState.THINKING:  # a held reply (barge-in) is not heard speaking
            self._turn_to(TurnState.SPEAKING)

    def _on_reply_done(self, reply: Reply) -> None:
        if reply is not self._reply:
            return
        self._reply = None
        assert reply.task is not None
        if reply.task.cancelled():
            self._turn_to(self._floor_without_reply())
            return
        error = reply.task.exception()
        if error is not None:
            self._emit(EventType.ERROR, where="reply", reply_id=reply.id, error=repr(error))
        self._record(reply, reply.outcome())
        self._emit(
            EventType.AGENT_AUDIO_STOPPED, reply_id=reply.id, at=reply.audio_done_at, reason="completed"
        )
        self._emit(
            EventType.AGENT_REPLY_DONE,
            reply_id=reply.id,
            input_tokens=reply.usage.input_tokens,
            output_tokens=reply.usage.output_tokens,
        )
        self._turn_to(self._floor_without_reply())
        if reply.end_after is not None:
            self.end(reply.end_after)
        elif self._handed_over_to is None:
            self._reader.read()

    def _stop_reply(self, reason: str) -> None:
        """Cancel the current reply in one move; the context keeps only what the user heard.

        The turn state is the caller's to set next (a new reply, the caller's turn, the end)."""
        reply = self._reply
        if reply is None or reply.task is None:
            self._reply = None
            return
        if reply.task.done():  # it finished just now, and its done-callback has not run yet
            self._on_reply_done(reply)
            return
        self._reply = None
        reply.pause()
        cut = reply.paused_at
        if cut is not None and isinstance(self.output, ConfirmsPlayout):
            cut = self.output.heard_until(cut)  # the line knows when the listener really heard it
        outcome = reply.outcome(stopped_at=cut)
        reply.task.cancel()
        self._spawn(self.output.clear())
        self._record(reply, outcome)
        self._emit(
            EventType.REPLY_CANCELLED,
            reply_id=reply.id,
            reason=reason,
            heard_text=outcome.heard_text,
            interrupted=outcome.interrupted,
        )
        if reply.first_audio_at is not None:
            self._emit(EventType.AGENT_AUDIO_STOPPED, reply_id=reply.id, at=reply.paused_at, reason=reason)

    def _record(self, reply: Reply, outcome: Any) -> None:
        if reply.user_message is not None:
            self.context.add_user(reply.user_message.content)
        self.context.add_turn(outcome.messages)
        self.context.prune()  # the turn is committed: forget what no request can carry any more

    def _drop_candidate(self) -> None:
        candidate, self._candidate = self._candidate, None
        if candidate is None:
            return
        if candidate.task is not None:
            candidate.task.cancel()
        if candidate.reply is not None and candidate.reply.task is not None:
            candidate.reply.task.cancel()

    async def _adopt_language(self, language: str, probability: float | None) -> None:
        """The caller's first words were in ``language``: hear, answer and speak it for the rest of the
        call. Without a voice for it (none configured, or it failed to load) the agent's voice stays."""
        self._hearing.hear_in(language)
        self.context.language_note = language_note(language)
        voice = self.stack.voice
        if self.stack.voices is not None:
            try:
                chosen = await asyncio.to_thread(self.stack.voices, language)
            except Exception as exc:  # the call goes on in the voice it has; the timeline says why
                log.warning(
                    "no voice for the detected language",
                    session_id=self.id,
                    language=language,
                    error=repr(exc),
                )
                self._emit(EventType.ERROR, where="language.voice", stage="tts", error=repr(exc))
            else:
                self._tts, voice = bind_reporter(chosen.tts, self._provider_event), chosen.name
        self._emit(
            EventType.LANGUAGE_DETECTED,
            language=language,
            probability=None if probability is None else round(probability, 3),
            voice=voice,
        )

    # --- plumbing -----------------------------------------------------------------------------------

    def _floor_without_reply(self) -> TurnState:
        """Where the floor is once the reply is gone: with the caller's turn, if one is under way."""
        if self._turn is TurnState.ENDED:
            return TurnState.ENDED
        if self._candidate is not None:
            return TurnState.USER_PAUSED
        if self._endpointer.in_speech:
            return TurnState.USER_SPEAKING if self._turn.hears_turn else TurnState.TALKED_OVER
        return TurnState.LISTENING

    def _turn_to(self, new: TurnState) -> None:
        """The one place the turn state changes; ``state.changed`` when its public face changes."""
        old = self._turn
        if new is old:
            return
        if new not in TURN_TRANSITIONS[old]:
            raise InvalidTransition(f"{old} -> {new}")
        self._turn = new
        if new.public is not old.public:
            self._emit(EventType.STATE_CHANGED, old=str(old.public), new=str(new.public), turn=str(new))

    def _emit(self, type_: EventType, **data: Any) -> None:
        self.timeline.emit(Event(type_, self.id, now(), data))

    def _provider_event(self, event: ProviderEvent) -> None:
        kind = EventType.PROVIDER_FAILOVER if event.kind == "failover" else EventType.PROVIDER_BREAKER
        self._emit(kind, **event.data)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._emit(EventType.ERROR, where="session", error=repr(task.exception()))
