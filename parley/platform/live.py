"""A call in progress, as a transport sees it: the sink for the session's timeline, the recorder taps,
and the hang-up bookkeeping.

    live = await platform.live_call(session_id=...)           # or agent_ref=..., transport="twilio"
    async with live:
        session = Session(live.agent, stack, live.output(transport_output), live.timeline,
                          session_id=live.session_id)
        ... on every inbound frame: live.hear(frame); session.feed_audio(frame)
        await session.run()

The call's status follows the session's own events (``session.started`` → in progress,
``session.ended`` → completed); leaving the block with an exception marks it failed.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import TYPE_CHECKING, Any

import structlog

from parley.audio.frame import AudioFrame
from parley.engine.agent import AgentConfig
from parley.engine.events import TimelineSink
from parley.engine.knowledge import KnowledgeIndex
from parley.engine.transport import AudioOutput
from parley.engine.variables import CallVariables
from parley.platform.schemas import CALLER_NAME_KEY, CallSummary
from parley.store.calls import CallRepository
from parley.store.lifecycle import CallStatus, InvalidStatusTransition
from parley.timeline.recorder import RecordingOutput, StereoRecorder

log = structlog.get_logger("parley.platform.live")

if TYPE_CHECKING:
    from parley.platform.runtime import Platform

HEARTBEAT_S = 30.0
TRANSPORT_ERROR = "transport_error"
"""End reason of a call whose transport (a phone call's media WebSocket) failed on this side: the
carrier's line may have gone on, and ends on its own."""


class LiveCall:
    def __init__(
        self, platform: Platform, call: CallSummary, agent: AgentConfig, recorder: StereoRecorder | None
    ) -> None:
        self.platform = platform
        self.call = call
        self.agent = agent
        self.recorder = recorder
        self._heartbeat: asyncio.Task[None] | None = None
        self._finished = False

    @property
    def call_id(self) -> str:
        return self.call.id

    @property
    def session_id(self) -> str:
        return self.call.session_id

    @property
    def timeline(self) -> TimelineSink:
        return self.platform.bus

    def variables(self) -> CallVariables:
        """What the agent's prompts may mention about this call (``{{caller.number}}``, metadata …).

        The caller is whoever the agent talks to: the callee of an outbound call."""
        call, metadata = self.call, self.call.metadata
        outbound = call.direction == "outbound"
        name, zone = metadata.get(CALLER_NAME_KEY), metadata.get("time_zone")
        return CallVariables(
            call_id=call.id,
            direction=call.direction,
            caller_number=(call.to_number if outbound else call.from_number) or "",
            caller_name=name if isinstance(name, str) else "",
            called_number=(call.from_number if outbound else call.to_number) or "",
            metadata=metadata,
            started_at=call.started_at or call.created_at,
            time_zone=zone if isinstance(zone, str) else None,
        )

    def tool_metadata(self) -> dict[str, Any]:
        """The call's metadata as its tools see it (``CallContext.metadata``): as the integrator gave it.
        ``caller_name`` is kept in the stored metadata only to fill ``{{caller.name}}``; tools get it as
        ``CallContext.caller_name``, so a handler reading its own keys finds no key it never set."""
        return {key: value for key, value in self.call.metadata.items() if key != CALLER_NAME_KEY}

    async def knowledge(self) -> KnowledgeIndex | None:
        """The search index over the agent's documents (None when it has none). A store failure here
        is logged and the call goes on without documents: an answer from the prompt beats no call."""
        if self.call.agent_id is None or self.call.org_id is None:
            return None
        try:
            return await self.platform.documents.index_for(self.call.org_id, self.call.agent_id)
        except Exception:
            log.exception("loading the agent's documents failed", call_id=self.call_id)
            return None

    def output(self, inner: AudioOutput) -> AudioOutput:
        """The transport's output, recording what the agent says (and cutting what a flush discards)."""
        return RecordingOutput(inner, self.recorder) if self.recorder is not None else inner

    def hear(self, frame: AudioFrame) -> None:
        """Record a frame the caller sent (call this for every inbound frame)."""
        if self.recorder is not None:
            self.recorder.user(frame)

    async def __aenter__(self) -> LiveCall:
        self._heartbeat = asyncio.create_task(self._beat(), name=f"heartbeat-{self.call_id}")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.finish(failed=exc is not None and not isinstance(exc, asyncio.CancelledError))

    async def _beat(self) -> None:
        """Keeps the call row fresh so start-up recovery elsewhere knows this call is alive."""
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            try:
                async with self.platform.db.session() as session:
                    await CallRepository(session).touch([self.call_id])
            except Exception as exc:  # the next beat tries again; a missed one only ages the row
                log.warning("call heartbeat failed", call_id=self.call_id, error=repr(exc))

    async def finish(self, *, failed: bool = False) -> None:
        """Hang-up: finalize and store the recording, flush the timeline. Safe to call twice."""
        if self._finished:
            return
        self._finished = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
        if self.recorder is not None:
            try:
                await self.platform.recordings.finish(self.call_id, self.recorder)
            except Exception:  # the call's record must survive a storage failure
                log.exception("storing the recording failed", call_id=self.call_id)
        await self.platform.bus.flush()
        if failed:
            with contextlib.suppress(InvalidStatusTransition):
                await self.platform.calls.set_status(self.call_id, CallStatus.FAILED, reason=TRANSPORT_ERROR)
