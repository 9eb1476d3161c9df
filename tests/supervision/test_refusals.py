"""What supervision refuses, and when its room goes away: unknown and other organizations' calls, calls that
are not live here (queued, a coached room's, ended), bad modes, a fifth supervisor, a join token used
twice; the room closes when its last supervisor leaves and when the call ends, telling the sockets why."""

from __future__ import annotations

from pathlib import Path

from parley.transports.ws_client import LiveClient
from tests.coaching.kit import api, join, make_agent, other_org_headers
from tests.supervision.kit import ai_server, make_ai_agent, start_call, supervise


async def test_supervision_refusals_and_the_rooms_end(tmp_path: Path) -> None:
    async with ai_server(tmp_path) as (served, _), api(served) as http:
        agent_id = await make_ai_agent(http)
        missing = await http.post("/v1/calls/call_nope/supervisors", json={})
        assert missing.status_code == 404
        queued = (await http.post(f"/v1/agents/{agent_id}/sessions")).json()
        not_live = await http.post(f"/v1/calls/{queued['call_id']}/supervisors", json={})
        assert not_live.status_code == 409 and "not live" in not_live.json()["detail"]
        await make_agent(http, "sales")
        room = (await http.post("/v1/rooms", json={"agent": "sales"})).json()
        roomed = await http.post(f"/v1/calls/{room['call_id']}/supervisors", json={})
        assert roomed.status_code == 409 and "/v1/rooms" in roomed.json()["detail"]

        call_id, caller, _ = await start_call(served, http, agent_id)
        base = f"/v1/calls/{call_id}/supervisors"
        async with api(served, await other_org_headers(served)) as stranger:
            assert (await stranger.post(base, json={})).status_code == 404
            assert (await stranger.get(base)).status_code == 404
        for bad in ({"mode": "shout"}, {"mode": "speak"}, {"name": "x" * 121}, {"role": "rep"}):
            assert (await http.post(base, json=bad)).status_code == 422, bad
        assert (await http.get(base)).json() == {"call_id": call_id, "handed_over": False, "supervisors": []}

        first = await supervise(http, call_id, name="Dana")
        pid = first["participant_id"]
        assert (await http.patch(f"{base}/{pid}", json={"mode": "speak"})).status_code == 422
        assert (await http.patch(f"{base}/s_nobody", json={"mode": "barge"})).status_code == 404
        assert (await http.post(f"{base}/{pid}/whisper", json={"text": "x" * 501})).status_code == 422
        assert (await http.post(f"{base}/{pid}/whisper", json={"text": ""})).status_code == 422
        invited = [await supervise(http, call_id) for _ in range(3)]
        fifth = await http.post(base, json={})
        assert fifth.status_code == 409 and "4 supervisors" in fifth.json()["detail"]

        supervisor, _ = await join(first)
        again = await LiveClient.connect(first["ws_url"])
        refused = await again.wait_for("error", 5)
        assert refused["code"] == "unauthorized" and refused["fatal"]
        await again.wait_closed()
        assert again.ws.close_code == 1008
        listed = (await http.get(base)).json()["supervisors"]
        assert [(s["id"], s["mode"], s["connected"]) for s in listed] == [
            (pid, "listen", True),
            *((i["participant_id"], "listen", False) for i in invited),
        ]

        # The last one out closes the room: invitations withdrawn, then the connected supervisor removed.
        for invitation in invited:
            gone = await http.delete(f"{base}/{invitation['participant_id']}")
            assert gone.status_code == 204
        assert (await http.delete(f"{base}/{pid}")).status_code == 204
        await supervisor.wait_closed()
        assert supervisor.ws.close_reason == "removed"
        assert (await http.get(base)).json()["supervisors"] == []
        assert (await http.post(f"{base}/{pid}/whisper", json={"text": "hi"})).status_code == 404

        # A new room for the next supervisor; the call's end closes it, and says so.
        later = await supervise(http, call_id, mode="whisper")
        supervisor, _ = await join(later)
        await caller.send({"type": "end"})
        ended = await supervisor.wait_for("ended", 5)
        assert ended["reason"] == "call_ended"
        await supervisor.wait_closed()
        assert supervisor.ws.close_reason == "call_ended"
        after = await http.get(base)
        assert after.status_code == 409
        await caller.close()
