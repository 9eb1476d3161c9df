"""Threat: a stranger dials ``/twilio/stream`` pretending to be Twilio, to listen to a call, talk into
one, or run the agent on the operator's bill.

The upgrade is refused (HTTP 403) unless it carries Twilio's signature of the stream URL with the
account's auth token, and without a configured token no stream is taken at all (503). A stream's
signature covers only its URL, so it may be replayed: a stream then still needs a live call on the books
and that call's CallSid, and a call takes one stream.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from parley.server import twilio_stream
from parley.twilio_sim.caller import SimulatedCaller, connected_message, new_sid, stream_signature
from tests.server.conftest import fast_engines
from tests.server.test_twilio_stream import (
    TOKEN,
    book_call,
    caller_for,
    heard_reply,
    phone_server,
    stream_url,
)


async def refused_status(url: str, headers: dict[str, str]) -> int:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, additional_headers=headers, open_timeout=10, proxy=None):
            pass
    return refused.value.response.status_code


@pytest.mark.parametrize(
    "forgery",
    [
        "unsigned",
        "empty signature",
        "another auth token",
        "another URL",
        "another query",
        "tampered signature",
    ],
)
async def test_a_forged_upgrade_is_refused_before_anything_runs(tmp_path: Path, forgery: str) -> None:
    async with phone_server(fast_engines([], []), tmp_path) as served:
        url = stream_url(served)
        signature = {
            "unsigned": None,
            "empty signature": "",
            "another auth token": stream_signature(url, "not-the-token"),
            "another URL": stream_signature("wss://evil.example/twilio/stream", TOKEN),
            "another query": stream_signature(url + "?call_id=call_x", TOKEN),
            "tampered signature": stream_signature(url, TOKEN) + "=",
        }[forgery]
        headers = {} if signature is None else {"X-Twilio-Signature": signature}
        assert await refused_status(url, headers) == 403
        assert len(served.runtime.registry) == 0


async def test_no_stream_is_taken_when_twilio_is_not_configured(tmp_path: Path) -> None:
    async with phone_server(fast_engines([], []), tmp_path, twilio_auth_token=None) as served:
        url = stream_url(served)
        assert await refused_status(url, {"X-Twilio-Signature": stream_signature(url, TOKEN)}) == 503


async def test_behind_a_proxy_only_the_public_url_is_signed(tmp_path: Path) -> None:
    public = "https://voice.example.com"
    async with phone_server(fast_engines([], []), tmp_path, public_url=public) as served:
        local = stream_url(served)
        assert await refused_status(local, {"X-Twilio-Signature": stream_signature(local, TOKEN)}) == 403
        call_id, call_sid = await book_call(served)
        caller = caller_for(served, call_id, call_sid, signature_url="wss://voice.example.com/twilio/stream")
        async with caller:
            assert caller.started_at is not None
            await heard_reply(caller, caller.started_at)


async def test_a_replayed_signature_cannot_take_over_a_call_without_its_call_sid(tmp_path: Path) -> None:
    async with phone_server(fast_engines([], []), tmp_path) as served:
        call_id, call_sid = await book_call(served)
        intruder = SimulatedCaller(
            stream_url(served),
            auth_token=TOKEN,
            call_sid=new_sid("CA"),
            custom_parameters={"call_id": call_id},
        )
        async with intruder:
            await intruder.wait_closed(10.0)
        assert intruder.media_received == 0 and len(served.runtime.registry) == 0
        # the real call is untouched and still connects
        async with caller_for(served, call_id, call_sid) as caller:
            assert caller.started_at is not None
            await heard_reply(caller, caller.started_at)


async def test_a_signed_stream_that_never_starts_is_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(twilio_stream, "START_TIMEOUT_S", 0.3)
    async with phone_server(fast_engines([], []), tmp_path) as served:
        url = stream_url(served)
        headers = {"X-Twilio-Signature": stream_signature(url, TOKEN)}
        async with connect(url, additional_headers=headers, open_timeout=10, proxy=None) as ws:
            await ws.send(json.dumps(connected_message()))
            await ws.send("{not json")
            await ws.send(json.dumps({"event": "media", "media": [[[[[[[[[[]]]]]]]]]]}))
            with pytest.raises(ConnectionClosed):
                while True:
                    await ws.recv()
            assert ws.close_code == 1008
        assert len(served.runtime.registry) == 0
