"""``/v1/rooms`` as a supervisor uses it: the lifecycle, who may see what, join tokens, bounds, and the
call each room leaves on the books."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import soundfile as sf
from websockets.exceptions import ConnectionClosed

from parley.transports.ws_client import LiveClient
from tests.coaching.kit import (
    CUSTOMER_HZ,
    api,
    invite,
    join,
    live_room,
    make_agent,
    open_room,
    other_org_headers,
    platform_of,
    room_server,
    tone,
)
from tests.server.conftest import talking


async def _refused(url: str) -> tuple[dict[str, object], int | None]:
    """Connect and start with ``url``: the error the socket gets, and its close code."""
    client = await LiveClient.connect(url)
    with contextlib.suppress(ConnectionClosed):  # a bad token is refused before anything is read
        await client.send({"type": "start", "sample_rate": 16000})
    error = await client.wait_for("error", 5)
    await client.wait_closed()
    code = client.ws.close_code
    return error, code


async def test_a_room_from_creation_to_its_end(tmp_path: Path) -> None:
    async with room_server(tmp_path) as served, api(served) as http:
        room = await open_room(http)
        assert room["id"].startswith("room_") and room["call_id"] and room["agent"] == "sales"
        assert [(p["id"], p["role"], p["mode"], p["connected"]) for p in room["participants"]] == [
            ("ai-coach", "coach", "whisper", True)
        ]
        assert [r["id"] for r in (await http.get("/v1/rooms")).json()["data"]] == [room["id"]]

        rep = await invite(http, room["id"], "rep")
        customer = await invite(http, room["id"], "customer")
        assert rep["mode"] == "speak" and rep["token"] and rep["ws_url"].startswith("ws://")
        assert rep["page_url"] == f"/voice/rep.html?room={room['id']}&token={rep['token']}"
        assert customer["page_url"] is None
        shown = (await http.get(f"/v1/rooms/{room['id']}")).json()
        assert {p["id"]: p["connected"] for p in shown["participants"]} == {
            "ai-coach": True,
            rep["participant_id"]: False,
            customer["participant_id"]: False,
        }
        assert shown["hints"] == [] and "dead_air" in shown["metrics"]

        client, _ = await join(rep)
        ready = client.of_type("ready")[0]
        assert ready["participant"]["id"] == rep["participant_id"] and ready["room"]["id"] == room["id"]
        listed = (await http.get(f"/v1/rooms/{room['id']}")).json()["participants"]
        assert {p["id"]: p["connected"] for p in listed}[rep["participant_id"]] is True

        # A supervisor mutes the AI coach's whisper, then withdraws the customer's invitation.
        muted = await http.patch(f"/v1/rooms/{room['id']}/participants/ai-coach", json={"mode": "listen"})
        assert muted.status_code == 200 and muted.json()["mode"] == "listen"
        told = await client.wait_for("mode", 5)
        assert (told["participant_id"], told["new"]) == ("ai-coach", "listen")
        gone = await http.delete(f"/v1/rooms/{room['id']}/participants/{customer['participant_id']}")
        assert gone.status_code == 204
        refused, code = await _refused(customer["ws_url"])
        assert refused["code"] == "unauthorized" and code == 1008

        removed = await http.delete(f"/v1/rooms/{room['id']}/participants/{rep['participant_id']}")
        assert removed.status_code == 204
        await client.wait_closed()
        assert client.ws.close_code == 1000

        ended = await http.post(f"/v1/rooms/{room['id']}/end")
        assert ended.status_code == 200
        assert (await http.get(f"/v1/rooms/{room['id']}")).status_code == 404
        await platform_of(served).settle()
        call = (await http.get(f"/v1/calls/{room['call_id']}")).json()
        assert (call["status"], call["transport"], call["direction"]) == ("completed", "room", "inbound")
        assert call["end_reason"] == "ended" and call["metadata"]["room"]["id"] == room["id"]


async def test_rooms_need_a_key_and_stay_in_their_organization(tmp_path: Path) -> None:
    async with room_server(tmp_path) as served, api(served) as http:
        room = await open_room(http)
        async with api(served, headers={}) as anonymous:
            assert (await anonymous.get("/v1/rooms")).status_code == 401
            assert (await anonymous.post("/v1/rooms", json={"agent": "sales"})).status_code == 401
            assert (await anonymous.post(f"/v1/rooms/{room['id']}/end")).status_code == 401
        async with api(served, headers=await other_org_headers(served)) as theirs:
            assert (await theirs.get("/v1/rooms")).json()["data"] == []
            assert (await theirs.get(f"/v1/rooms/{room['id']}")).status_code == 404
            invited = await theirs.post(f"/v1/rooms/{room['id']}/participants", json={"role": "coach"})
            assert invited.status_code == 404
            patched = await theirs.patch(
                f"/v1/rooms/{room['id']}/participants/ai-coach", json={"mode": "barge"}
            )
            assert patched.status_code == 404
            assert (await theirs.post(f"/v1/rooms/{room['id']}/end")).status_code == 404
            # Its agents are its own: ours is not found from there.
            assert (await theirs.post("/v1/rooms", json={"agent": "sales"})).status_code == 404
        assert (await http.get(f"/v1/rooms/{room['id']}")).status_code == 200


async def test_bad_requests_are_refused_with_the_field_named(tmp_path: Path) -> None:
    async with room_server(tmp_path) as served, api(served) as http:
        room = await open_room(http)
        base = f"/v1/rooms/{room['id']}"
        for body in (
            {"role": "agent"},
            {"role": "boss"},
            {"role": "coach", "mode": "shout"},
            {"role": "rep", "x": 1},
        ):
            answer = await http.post(f"{base}/participants", json=body)
            assert answer.status_code == 422, (body, answer.text)
        assert (await http.patch(f"{base}/participants/ai-coach", json={"mode": "loud"})).status_code == 422
        assert (await http.patch(f"{base}/participants/p_nobody", json={"mode": "barge"})).status_code == 404
        assert (await http.post("/v1/rooms", json={"agent": "sales", "colour": "red"})).status_code == 422
        reserved = await http.post("/v1/rooms", json={"agent": "sales", "metadata": {"coaching": 1}})
        assert reserved.status_code == 422 and "coaching" in reserved.text
        missing = await http.post("/v1/rooms", json={"agent": "nobody"})
        assert missing.status_code == 404


async def test_a_join_token_works_once_and_not_after_it_expired(tmp_path: Path) -> None:
    async with room_server(tmp_path) as served, api(served) as http:
        room = await open_room(http)
        rep = await invite(http, room["id"], "rep")
        client, _ = await join(rep)
        error, code = await _refused(rep["ws_url"])
        assert (error["code"], error["fatal"], code) == ("unauthorized", True, 1008)
        other = await open_room(http, agent="support")
        error, code = await _refused(rep["ws_url"].replace(room["id"], other["id"]))
        assert code == 1008, "a token is good for its own room only"
        error, code = await _refused(rep["ws_url"].split("?")[0] + "?token=made-up")
        assert code == 1008

        live_room(served, room["id"]).token_ttl_s = 0.0  # tokens handed out from now on are already old
        late = await invite(http, room["id"], "coach")
        error, code = await _refused(late["ws_url"])
        assert error["code"] == "unauthorized" and code == 1008
        assert (await _ping(client))["type"] == "pong", "the first participant was never disturbed"
        await client.close()


async def _ping(client: LiveClient) -> dict[str, object]:
    mark = len(client.messages)
    await client.send({"type": "ping", "id": 7})
    return await client.wait_for("pong", 5, since=mark, id=7)


async def test_the_call_record_keeps_the_transcript_hints_recording_and_summary(tmp_path: Path) -> None:
    async with (
        room_server(tmp_path, ["honestly the price is too high for us"]) as served,
        api(served) as http,
    ):
        room = await open_room(http, whisper_hints=False, competitors=["HubSpot"])
        customer, _ = await join(await invite(http, room["id"], "customer"))
        rep, _ = await join(await invite(http, room["id"], "rep"))
        async with talking(customer) as mic:
            await mic.say(tone(1.0, CUSTOMER_HZ))
            hint = await rep.wait_for("hint", 5)
        assert hint["whisper"] is False, "whisper_hints is off: a card only"
        recognizer = live_room(served, room["id"])._stack.recognizer
        assert ("HubSpot",) in recognizer.vocabularies, "each leg's recogniser expects the competitors' names"
        scraped = (await served.get("/metrics")).text
        assert 'parley_coach_triggers_total{trigger="price_objection"} 1.0' in scraped
        assert 'parley_coach_hints_total{source="rule"} 1.0' in scraped
        await rep.wait_for("metrics", 5)
        assert customer.of_type("hint") == [] and customer.of_type("metrics") == []
        assert [m["role"] for m in customer.of_type("utterance")] == ["customer"]
        detail = (await http.get(f"/v1/rooms/{room['id']}")).json()
        assert [h["trigger"] for h in detail["hints"]] == ["price_objection"]
        assert detail["metrics"]["roles"]["customer"]["utterances"] == 1

        assert (await http.post(f"/v1/rooms/{room['id']}/end")).status_code == 200
        ended = await rep.wait_for("ended", 5)
        assert ended["reason"] == "ended"
        await rep.wait_closed()
        await customer.wait_closed()
        await platform_of(served).settle()

        call = (await http.get(f"/v1/calls/{room['call_id']}")).json()
        assert call["status"] == "completed"
        types = [e["type"] for e in call["events"]]
        for wanted in ("session.started", "room.joined", "room.utterance", "coach.trigger", "coach.hint"):
            assert wanted in types, (wanted, types)
        assert types[-1] == "session.ended"
        utterance = next(e for e in call["events"] if e["type"] == "room.utterance")["data"]
        assert (utterance["role"], utterance["text"]) == ("customer", "honestly the price is too high for us")
        coaching = call["metadata"]["coaching"]
        assert coaching["triggers"] == {"price_objection": 1}
        assert coaching["hints"][0]["text"] == hint["text"]
        legs = call["metadata"]["room"]["recording"]["legs"]
        assert set(legs) == {
            "ai-coach",
            customer.of_type("ready")[0]["participant"]["id"],
            rep.of_type("ready")[0]["participant"]["id"],
        }

        assert call["recording"]["status"] == "ready"
        wav = await http.get(call["recording"]["url"])
        audio, rate = sf.read(io.BytesIO(wav.content), dtype="int16")
        assert rate == 16000 and audio.shape[1] == 2
        assert abs(audio[:, 0]).max() > 5000, "the customer is on the left"
        assert abs(audio[:, 1]).max() < 100, "the rep (silent here) is on the right"


async def test_rooms_and_participants_are_bounded(tmp_path: Path) -> None:
    async with room_server(tmp_path, max_rooms=2, max_rooms_per_org=1) as served, api(served) as http:
        room = await open_room(http)
        again = await http.post("/v1/rooms", json={"agent": "sales"})
        assert again.status_code == 429 and "organization" in again.json()["detail"]
        async with api(served, headers=await other_org_headers(served, "acme")) as acme:
            await make_agent(acme, "desk")
            assert (await acme.post("/v1/rooms", json={"agent": "desk"})).status_code == 201
        async with api(served, headers=await other_org_headers(served, "globex")) as globex:
            await make_agent(globex, "desk")
            full = await globex.post("/v1/rooms", json={"agent": "desk"})
            assert full.status_code == 429 and "server" in full.json()["detail"], "the process's limit"
            await http.post(f"/v1/rooms/{room['id']}/end")
            made = await globex.post("/v1/rooms", json={"agent": "desk"})
            assert made.status_code == 201
            # 8 legs per room, the AI coach's included; invitations count.
            for _ in range(7):
                await invite(globex, made.json()["id"], "coach")
            full_room = await globex.post(f"/v1/rooms/{made.json()['id']}/participants", json={"role": "rep"})
            assert full_room.status_code == 409


async def test_a_room_nobody_is_in_ends_itself(tmp_path: Path) -> None:
    async with room_server(tmp_path, room_idle_timeout_s=0.3) as served, api(served) as http:
        room = await open_room(http)
        rep, _ = await join(await invite(http, room["id"], "rep"))
        live = live_room(served, room["id"])
        await rep.close()  # the last one out starts the idle clock
        await live.wait_ended()
        assert (await http.get(f"/v1/rooms/{room['id']}")).status_code == 404
        await platform_of(served).settle()
        call = (await http.get(f"/v1/calls/{room['call_id']}")).json()
        assert (call["status"], call["end_reason"]) == ("completed", "idle")


async def test_rooms_end_cleanly_when_the_server_shuts_down(tmp_path: Path) -> None:
    async with room_server(tmp_path, shutdown_grace_s=0.2) as served, api(served) as http:
        room = await open_room(http)
        rep, _ = await join(await invite(http, room["id"], "rep"))
        await served.runtime.drain(0.2)
        notice = await rep.wait_for("error", 5)
        assert notice["code"] == "shutting_down" and not notice["fatal"]
        assert (await rep.wait_for("ended", 5))["reason"] == "server_shutdown"
        await rep.wait_closed()
        refused = await http.post("/v1/rooms", json={"agent": "sales"})
        assert refused.status_code == 503
        await platform_of(served).settle()
        call = (await http.get(f"/v1/calls/{room['call_id']}")).json()
        assert (call["status"], call["end_reason"]) == ("completed", "server_shutdown")
