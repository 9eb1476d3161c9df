"""Outbound webhooks: a call's events go to the outbox with the facts they report, and reach the
organization's endpoints signed, retried with backoff, and logged."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, update

from parley.config import Settings
from parley.platform.runtime import Platform
from parley.platform.schemas import AgentCreate
from parley.providers.llm.scripted import ScriptRule
from parley.store.models import WebhookEndpoint, WebhookEvent
from parley.store.types import utcnow
from parley.store.webhooks import enqueue_event
from parley.timeline.envelope import Envelope
from parley.timeline.webhooks import enqueue_timeline
from parley.webhooks.dispatcher import WebhookDispatcher
from parley.webhooks.endpoints import EndpointIn, EndpointPatch, WebhookService
from parley.webhooks.guard import UrlPolicy
from parley.webhooks.signing import verify
from tests.engine.harness import agent, speech
from tests.platform.live import run_live_call
from tests.webhooks.receiver import Receiver, receiving

ALL = ["call.started", "call.ended", "call.analyzed", "transcript.final", "tool.called"]


class Clock:
    def __init__(self) -> None:
        self.now = utcnow() + timedelta(seconds=1)  # past anything enqueued in the test

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
async def platform(db_url: str, tmp_path: Path) -> AsyncIterator[Platform]:
    settings = Settings(
        data_dir=tmp_path,
        database_url=db_url,
        webhook_allow_http=True,
        webhook_allow_private_hosts=["127.0.0.1"],
        webhook_retry_backoff_s=10,
        webhook_max_attempts=3,
        webhook_lease_s=30,
    )
    opened = await Platform.open(settings)
    yield opened
    await opened.close()


def service(platform: Platform) -> WebhookService:
    return WebhookService(platform.db, platform.secrets, UrlPolicy.from_settings(platform.settings))


async def drain(dispatcher: WebhookDispatcher) -> None:
    while await dispatcher.step():
        pass


async def test_a_live_call_reaches_the_endpoint_as_signed_events(platform: Platform) -> None:
    org = platform.default_org_id
    config = agent(
        first_message="Hello, bakery here.",
        tools=[{"name": "opening_hours", "kind": "static", "result": {"opens": "9am"}}],
    )
    await platform.agents.create(org, AgentCreate(name="bakery", config=config))
    receiver = Receiver()
    async with receiving(receiver):
        everything = await service(platform).create(org, EndpointIn(url=receiver.url + "/all", events=ALL))
        ends = await service(platform).create(
            org, EndpointIn(url=receiver.url + "/ends", events=["call.ended"])
        )
        live = await run_live_call(
            platform,
            "bakery",
            ["When do you open?"],
            [ScriptRule.call("open", "opening_hours", {}), ScriptRule.after_tool("open", "We open at nine.")],
            [speech(1.0)],
        )
        await platform.settle()
        dispatcher = WebhookDispatcher(platform.db, platform.secrets, platform.settings)
        try:
            await drain(dispatcher)
        finally:
            await dispatcher.close()

    to_all = [r for r in receiver.received if r.path == "/all"]
    kinds = [r.json()["type"] for r in to_all]
    assert sorted(kinds) == sorted(["call.started", "transcript.final", "tool.called", "call.ended"])
    for request in to_all:
        verify(everything.secret, request.headers["parley-signature"], request.body)
        assert request.headers["parley-event-id"] == request.json()["id"]
        assert request.headers["parley-event-type"] == request.json()["type"]
    events = {r.json()["type"]: r.json()["data"] for r in to_all}
    assert events["call.started"]["call"]["id"] == live.call_id
    assert events["transcript.final"] == {
        "call_id": live.call_id,
        "speaker": "user",
        "text": "When do you open?",
        "source": "speech",
    }
    tool = events["tool.called"]
    assert (tool["tool"], tool["arguments"], tool["ok"]) == ("opening_hours", {}, True)
    ended = events["call.ended"]
    assert ended["call"]["status"] == "completed" and ended["call"]["duration_s"] > 0
    assert [t["speaker"] for t in ended["transcript"]] == ["agent", "user", "agent"]
    (only_end,) = [r for r in receiver.received if r.path == "/ends"]
    ended_id = next(r.json()["id"] for r in to_all if r.json()["type"] == "call.ended")
    assert only_end.json()["id"] == ended_id, "one event, delivered to each endpoint subscribed to it"
    verify(ends.secret, only_end.headers["parley-signature"], only_end.body)

    log = await service(platform).deliveries(org, everything.id, None, 50, None)
    assert {d.status for d in log.data} == {"delivered"} and len(log.data) == 4
    assert all(d.attempts == 1 and [a.status_code for a in d.log] == [200] for d in log.data)


async def test_an_event_is_written_once_however_often_its_fact_is_stored(platform: Platform) -> None:
    org = platform.default_org_id
    await service(platform).create(
        org, EndpointIn(url="http://127.0.0.1:9/x", events=["transcript.final", "call.analyzed"])
    )
    call, _ = await platform.calls.create(org, direction="web", transport="websocket")
    batch = [Envelope(call.session_id, 3, "transcript.final", 1.0, 1.0, {"text": "hi", "source": "text"})]
    async with platform.db.session() as session:
        from parley.store.models import Call

        row = await session.get(Call, call.id)
        assert row is not None
        await enqueue_timeline(session, row, batch)
        await enqueue_timeline(session, row, batch)  # a redelivered timeline batch
        assert await enqueue_event(session, org, "call.analyzed", {"call_id": call.id}, "k1") is not None
        assert await enqueue_event(session, org, "call.analyzed", {"call_id": call.id}, "k1") is None
        assert await enqueue_event(session, org, "tool.called", {}, "k2") is None, "no subscriber: not kept"
        with pytest.raises(ValueError, match="unknown webhook event"):
            await enqueue_event(session, org, "call.exploded", {})
        count = await session.scalar(select(func.count()).select_from(WebhookEvent))
    assert count == 2


async def test_failures_are_retried_with_backoff_until_they_give_up_and_can_be_retried(
    platform: Platform,
) -> None:
    org = platform.default_org_id
    receiver = Receiver(statuses=[500, 503, 502, 500])
    clock = Clock()
    async with receiving(receiver):
        endpoint = await service(platform).create(org, EndpointIn(url=receiver.url, events=["call.analyzed"]))
        async with platform.db.session() as session:
            await enqueue_event(session, org, "call.analyzed", {"summary": "fine"}, "call_1:analyzed")
        dispatcher = WebhookDispatcher(platform.db, platform.secrets, platform.settings, clock=clock)
        try:
            assert await dispatcher.step() == 1  # HTTP 500
            assert await dispatcher.step() == 0, "not due again before its backoff"
            clock.advance(9.9)
            assert await dispatcher.step() == 0
            clock.advance(0.2)
            assert await dispatcher.step() == 1  # HTTP 503, then a wait twice as long
            clock.advance(19.9)
            assert await dispatcher.step() == 0
            clock.advance(0.2)
            assert await dispatcher.step() == 1  # HTTP 502: the third and last attempt
            clock.advance(3600)
            assert await dispatcher.step() == 0
            (failed,) = (await service(platform).deliveries(org, endpoint.id, "failed", 10, None)).data
            assert failed.attempts == 3 and failed.last_status_code == 502
            assert [(a.attempt, a.status_code) for a in failed.log] == [(1, 500), (2, 503), (3, 502)]
            assert failed.last_error is not None and failed.last_error.startswith("HTTP 502")

            retried = await service(platform).retry(org, endpoint.id, failed.id)
            assert retried.status == "pending"
            assert await dispatcher.step() == 1  # HTTP 500 once more: failed again, one attempt later
            receiver.statuses.clear()
            await service(platform).retry(org, endpoint.id, failed.id)
            assert await dispatcher.step() == 1
        finally:
            await dispatcher.close()
    (done,) = (await service(platform).deliveries(org, endpoint.id, None, 10, None)).data
    assert done.status == "delivered" and done.attempts == 5 and done.delivered_at is not None
    ids = {r.headers["parley-event-id"] for r in receiver.received}
    assert len(ids) == 1 and len(receiver.received) == 5, "every attempt carries the same event id"


async def test_a_delivery_whose_worker_died_is_taken_over_after_its_lease(platform: Platform) -> None:
    org = platform.default_org_id
    receiver = Receiver()
    clock = Clock()
    async with receiving(receiver):
        endpoint = await service(platform).create(org, EndpointIn(url=receiver.url, events=["call.analyzed"]))
        async with platform.db.session() as session:
            await enqueue_event(session, org, "call.analyzed", {}, "call_2:analyzed")
        from parley.store.webhooks import WebhookRepository

        async with platform.db.session() as session:  # a worker claims it, then dies before sending
            (delivery_id,) = await WebhookRepository(session).due(clock(), 10)
            assert await WebhookRepository(session).claim(
                delivery_id, clock(), clock() + timedelta(seconds=30)
            )
        dispatcher = WebhookDispatcher(platform.db, platform.secrets, platform.settings, clock=clock)
        try:
            assert await dispatcher.step() == 0, "leased to the other worker"
            clock.advance(31)
            assert await dispatcher.step() == 1
        finally:
            await dispatcher.close()
    (done,) = (await service(platform).deliveries(org, endpoint.id, None, 10, None)).data
    assert done.status == "delivered" and done.attempts == 2 and [a.attempt for a in done.log] == [2]
    assert len(receiver.received) == 1


async def test_a_paused_endpoint_gets_nothing_new(platform: Platform) -> None:
    org = platform.default_org_id
    endpoint = await service(platform).create(
        org, EndpointIn(url="http://127.0.0.1:9/", events=["call.ended"])
    )
    await service(platform).update(org, endpoint.id, EndpointPatch(enabled=False))
    call, _ = await platform.calls.create(org, direction="web", transport="websocket")
    await platform.calls.set_status(call.id, "in_progress")
    await platform.calls.set_status(call.id, "completed", reason="hangup")
    assert (await service(platform).deliveries(org, endpoint.id, None, 10, None)).data == []


async def test_a_url_the_client_cannot_send_is_a_failed_attempt_until_it_gives_up(platform: Platform) -> None:
    """An endpoint stored before its URL form was refused (here an A-label httpx cannot decode) fails each
    attempt with a logged error and stops at the attempt limit, instead of staying `sending` forever."""
    org = platform.default_org_id
    clock = Clock()
    endpoint = await service(platform).create(
        org, EndpointIn(url="http://127.0.0.1:9/", events=["call.ended"])
    )
    async with platform.db.session() as session:
        await session.execute(update(WebhookEndpoint).values(url="https://xn--/"))
        await enqueue_event(session, org, "call.ended", {}, "call_3:ended")
    dispatcher = WebhookDispatcher(platform.db, platform.secrets, platform.settings, clock=clock)
    try:
        for _ in range(3):
            assert await dispatcher.step() == 1
            clock.advance(3600)  # past any backoff and any lease
        assert await dispatcher.step() == 0, "given up after webhook_max_attempts"
    finally:
        await dispatcher.close()
    (failed,) = (await service(platform).deliveries(org, endpoint.id, None, 10, None)).data
    assert (failed.status, failed.attempts) == ("failed", 3)
    assert failed.last_error is not None and "not a valid URL" in failed.last_error
    assert [(a.attempt, a.status_code) for a in failed.log] == [(1, None), (2, None), (3, None)]


async def test_an_unexpected_error_while_sending_is_logged_as_a_failed_attempt(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = platform.default_org_id
    endpoint = await service(platform).create(
        org, EndpointIn(url="http://127.0.0.1:9/", events=["call.ended"])
    )
    async with platform.db.session() as session:
        await enqueue_event(session, org, "call.ended", {}, "call_4:ended")
    dispatcher = WebhookDispatcher(platform.db, platform.secrets, platform.settings, clock=Clock())

    def refuse(*args: object, **kwargs: object) -> object:
        raise httpx.InvalidURL("Invalid non-printable ASCII character in URL")  # not an httpx.HTTPError

    monkeypatch.setattr(dispatcher._client, "stream", refuse)
    try:
        assert await dispatcher.step() == 1
    finally:
        await dispatcher.close()
    (pending,) = (await service(platform).deliveries(org, endpoint.id, None, 10, None)).data
    assert (pending.status, pending.attempts) == ("pending", 1), "retried after its backoff, not stuck"
    assert pending.last_error is not None and pending.last_error.startswith("InvalidURL: ")
    assert [(a.attempt, a.status_code) for a in pending.log] == [(1, None)]
