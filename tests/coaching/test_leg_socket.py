"""A participant's socket: bad input gets an ``error`` message and the socket (and the room) go on."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from parley.transports.ws_client import LiveClient
from parley.transports.ws_protocol import encode_audio
from tests.coaching.kit import api, invite, join, open_room, room_server

FRAME = np.zeros(320, np.int16).tobytes()


async def _error_after(client: LiveClient, payload: str | bytes) -> dict[str, object]:
    mark = len(client.messages)
    await client.send(payload) if isinstance(payload, str) else await client.ws.send(payload)
    return await client.wait_for("error", 5, since=mark)


async def _answers(client: LiveClient) -> None:
    mark = len(client.messages)
    await client.send({"type": "ping", "id": "alive"})
    assert (await client.wait_for("pong", 5, since=mark))["id"] == "alive"


async def test_bad_messages_get_an_error_and_the_socket_goes_on(tmp_path: Path) -> None:
    before_start: list[tuple[str | bytes, str]] = [
        ("{not json", "bad_json"),
        ('"just a string"', "invalid_message"),
        ('{"type": "teleport"}', "unknown_message"),
        ('{"type": "start", "sample_rate": 11025}', "unsupported_sample_rate"),
        ('{"type": "start", "sample_rate": "fast"}', "invalid_message"),
        ('{"type": "start", "colour": "red"}', "invalid_message"),
        ('{"type": "leave"}', "not_started"),
        ('{"type": "ping", "id": "' + "x" * 70_000 + '"}', "message_too_large"),
        ("[" * 50_000 + "]" * 50_000, "message_too_large"),
        ("[" * 20_000, "bad_json"),
        (encode_audio(1, 0.0, FRAME), "not_started"),
    ]
    async with room_server(tmp_path) as served, api(served) as http:
        room = await open_room(http)
        invitation = await invite(http, room["id"], "rep")
        client = await LiveClient.connect(invitation["ws_url"])
        for payload, code in before_start:
            error = await _error_after(client, payload)
            assert error["code"] == code and error["message"] and not error["fatal"], (payload[:40], error)
            await _answers(client)
        await client.send({"type": "start", "sample_rate": 16000})
        await client.wait_for("ready", 5)
        during: list[tuple[str | bytes, str]] = [
            ('{"type": "start", "sample_rate": 16000}', "already_started"),
            (b"\x07" * 40, "bad_audio_frame"),
            (encode_audio(2, 0.0, np.zeros(16000, np.int16).tobytes()), "frame_too_large"),
        ]
        for payload, code in during:
            error = await _error_after(client, payload)
            assert error["code"] == code, (code, error)
            await _answers(client)
        shown = (await http.get(f"/v1/rooms/{room['id']}")).json()["participants"]
        assert {p["id"]: p["connected"] for p in shown}[invitation["participant_id"]] is True
        await client.send({"type": "leave"})
        await client.wait_closed()
        assert client.ws.close_code == 1000
        assert (await http.get("/healthz")).status_code == 200


async def test_a_socket_that_never_starts_is_closed(tmp_path: Path) -> None:
    async with room_server(tmp_path, session_start_timeout_s=0.3) as served, api(served) as http:
        room = await open_room(http)
        client = await LiveClient.connect((await invite(http, room["id"], "rep"))["ws_url"])
        error = await client.wait_for("error", 5)
        assert error["code"] == "not_started" and error["fatal"]
        await client.wait_closed()
        assert client.ws.close_code == 1008


async def test_another_sites_page_cannot_open_a_participant_socket(tmp_path: Path) -> None:
    async with room_server(tmp_path) as served, api(served) as http:
        room = await open_room(http)
        invitation = await invite(http, room["id"], "rep")
        refused = False
        try:
            async with connect(invitation["ws_url"], origin="https://evil.example"):  # type: ignore[arg-type]
                pass
        except InvalidStatus as exc:
            refused = exc.response.status_code == 403
        assert refused, "a foreign Origin is refused before the upgrade"
        client, _ = await join(invitation)  # the token was not spent by the refused attempt
        with contextlib.suppress(Exception):
            await client.close()
