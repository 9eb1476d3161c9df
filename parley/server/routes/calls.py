"""``/v1/calls``: call lists and details, the recording, and the live event feed (Server-Sent Events)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Request, status
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse

from parley.inputs import MAX_INT32, SafeStr
from parley.platform.agents import NotFound
from parley.platform.calls import Feed
from parley.platform.recordings import recording_key
from parley.platform.runtime import Platform
from parley.platform.schemas import AnalysisOut, CallDetail, CallSummary, Direction, EventOut, Page
from parley.server.auth import Auth, PlatformDep
from parley.server.routes.params import CursorQ, EventId, Limit, Ref, When
from parley.store.calls import CallFilters
from parley.store.lifecycle import CallStatus
from parley.store.queries import InvalidCursor
from parley.telephony.signatures import public_base_url
from parley.timeline.bus import FINAL_EVENT
from parley.timeline.envelope import Envelope

router = APIRouter(prefix="/v1/calls", tags=["calls"])

KEEPALIVE_S = 15.0
"""A comment line this often keeps proxies from closing a quiet feed (and re-checks the call's status)."""


@router.get("", response_model=Page[CallSummary])
async def list_calls(
    principal: Auth,
    platform: PlatformDep,
    agent_id: Annotated[SafeStr | None, Query(max_length=200)] = None,
    status_: Annotated[list[CallStatus] | None, Query(alias="status", max_length=20)] = None,
    direction: Annotated[Direction | None, Query()] = None,
    since: When = None,
    until: When = None,
    limit: Limit = 50,
    cursor: CursorQ = None,
) -> Page[CallSummary]:
    """Calls, newest first, created in ``[since, until)``. ``status`` may be repeated."""
    filters = CallFilters(
        agent_id=agent_id,
        statuses=[s.value for s in status_ or []],
        direction=direction,
        since=since,
        until=until,
    )
    try:
        return await platform.calls.page(principal.org_id, filters, limit, cursor)
    except InvalidCursor as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc


@router.get("/{call_id}", response_model=CallDetail, responses={404: {"description": "no such call"}})
async def get_call(call_id: Ref, request: Request, principal: Auth, platform: PlatformDep) -> CallDetail:
    """A call whole: transcript, timeline, recording link, cost breakdown, latency figures, and the texts
    and emails its agent sent (``messages``, with how far each got)."""
    try:
        detail = await platform.calls.detail(principal.org_id, call_id)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    if detail.recording is not None and detail.recording.status == "ready" and detail.recording.url is None:
        # Behind a proxy the request's own host is an internal one: PARLEY_PUBLIC_URL names the public.
        path = request.app.url_path_for("get_recording", call_id=call_id)
        detail.recording.url = public_base_url(request, platform.settings) + path
    return detail


@router.post(
    "/{call_id}/analysis",
    response_model=AnalysisOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses={404: {"description": "no such call"}, 409: {"description": "not ended, or no analysis asked"}},
)
async def analyze_call(call_id: Ref, principal: Auth, platform: PlatformDep) -> AnalysisOut:
    """Run the call's post-call analysis again (in the background; the call detail shows the outcome)."""
    try:
        return await platform.analysis.rerun(principal.org_id, call_id)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except ValueError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc


@router.get(
    "/{call_id}/recording",
    response_class=Response,
    name="get_recording",
    responses={
        200: {"content": {"audio/wav": {}}, "description": "stereo WAV: caller left, agent right"},
        307: {"description": "redirect to a presigned download URL"},
        404: {"description": "no such call, or no finished recording"},
    },
)
async def get_recording(call_id: Ref, principal: Auth, platform: PlatformDep) -> Response:
    try:
        detail = await platform.calls.detail(principal.org_id, call_id, max_events=0)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    if detail.recording is None or detail.recording.status != "ready":
        raise HTTPException(status.HTTP_404_NOT_FOUND, "this call has no finished recording")
    path = platform.artifacts.local_path(recording_key(call_id))
    if path is not None:
        return FileResponse(path, media_type="audio/wav", filename=f"{call_id}.wav")
    if detail.recording.url is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "the recording file is missing")
    return RedirectResponse(detail.recording.url, status.HTTP_307_TEMPORARY_REDIRECT)


@router.get(
    "/{call_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "each event as `id: <seq>`, `event: <type>`, `data: <json>`; "
            "a final `event: end` when the call is over",
        },
        404: {"description": "no such call"},
    },
)
async def call_events(
    call_id: Ref,
    principal: Auth,
    platform: PlatformDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    after: EventId = None,
) -> StreamingResponse:
    """The call's timeline as Server-Sent Events: everything so far, then live events until the call
    ends. Reconnect with ``Last-Event-ID`` (browsers do) to resume without gaps or repeats."""
    start = _resume_after(last_event_id, after)
    try:
        feed = await platform.calls.feed(principal.org_id, call_id, start)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    return StreamingResponse(
        _stream(platform, principal.org_id, feed, start),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _resume_after(last_event_id: str | None, after: int | None) -> int:
    """Where the feed resumes: ``Last-Event-ID`` (a reconnecting browser's) over ``after``. Only the ids
    this feed sends are accepted: ASCII digits within the 32-bit sequence column."""
    value = (last_event_id or "").strip()
    if not value:
        return after or 0
    if not (value.isascii() and value.isdigit() and len(value) <= 10 and int(value) <= MAX_INT32):
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, f"Last-Event-ID must be an event id of this feed (0 to {MAX_INT32})"
        )
    return int(value)


def _message(event: EventOut) -> str:
    return f"id: {event.seq}\nevent: {event.type}\ndata: {event.model_dump_json()}\n\n"


def _live(envelope: Envelope, origin: float | None) -> EventOut:
    return EventOut(
        seq=envelope.seq,
        type=envelope.type,
        data=envelope.data,
        at=datetime.fromtimestamp(envelope.wall, UTC),
        t_ms=round((envelope.t - (origin if origin is not None else envelope.t)) * 1000, 1),
    )


async def _stream(platform: Platform, org_id: str, feed: Feed, start: int) -> AsyncIterator[str]:
    last, origin, call = start, feed.origin, feed.call
    while True:  # catch up from the database
        for event in feed.events:
            yield _message(event)
            last = event.seq
            if event.type == FINAL_EVENT:
                yield "event: end\ndata: {}\n\n"
                return
        if len(feed.events) < 500:
            break
        feed = await platform.calls.feed(org_id, call.id, last)
    if CallStatus(feed.call.status).terminal:
        yield "event: end\ndata: {}\n\n"
        return
    queue: asyncio.Queue[Envelope | None] = asyncio.Queue(1000)
    pump = asyncio.create_task(_pump(platform, call.session_id, last, queue))
    try:
        while True:
            try:
                envelope = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                yield ": keep-alive\n\n"
                feed = await platform.calls.feed(org_id, call.id, last)
                for event in feed.events:  # written by another process while we waited
                    yield _message(event)
                    last = event.seq
                if CallStatus(feed.call.status).terminal:
                    break
                continue
            if envelope is None:
                break
            if envelope.seq <= last:
                continue
            if origin is None:
                origin = envelope.t
            yield _message(_live(envelope, origin))
            last = envelope.seq
            if envelope.type == FINAL_EVENT:
                break
        yield "event: end\ndata: {}\n\n"
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump


async def _pump(
    platform: Platform, session_id: str, after: int, queue: asyncio.Queue[Envelope | None]
) -> None:
    try:
        async for envelope in platform.bus.follow(session_id, after):
            await queue.put(envelope)
    finally:
        with contextlib.suppress(asyncio.QueueFull):
            queue.put_nowait(None)
