"""A supervisor's typed whisper (``POST …/supervisors/{pid}/whisper``) needs the supervisor on the call:
an invitation whose socket never connected is a right to join, not to steer the agent unheard. Before
joining the whisper is a 409 saying to join first, and the agent is given nothing; once joined it works."""

from __future__ import annotations

from pathlib import Path

from tests.coaching.kit import api, join
from tests.supervision.kit import ai_server, call_record, events_of, make_ai_agent, start_call, supervise


async def test_a_supervisor_who_never_joined_cannot_whisper(tmp_path: Path) -> None:
    async with ai_server(tmp_path) as (served, _), api(served) as http:
        call_id, caller, _ = await start_call(served, http, await make_ai_agent(http))
        invited = await supervise(http, call_id, mode="whisper", name="Dana")
        pid = invited["participant_id"]
        whisper = f"/v1/calls/{call_id}/supervisors/{pid}/whisper"

        refused = await http.post(whisper, json={"text": "Offer the yearly plan."})
        assert refused.status_code == 409, refused.text
        detail = refused.json()["detail"]
        assert pid in detail and "join first" in detail
        listed = (await http.get(f"/v1/calls/{call_id}/supervisors")).json()["supervisors"]
        assert [(s["id"], s["connected"]) for s in listed] == [(pid, False)], "the invitation still stands"

        supervisor, _ = await join(invited)
        joined = await http.post(whisper, json={"text": "Mention the discount."})
        assert joined.status_code == 204, joined.text
        heard = await supervisor.wait_for("note", 5, kind="whisper")
        assert heard["text"] == "Mention the discount."

        await caller.send({"type": "end"})
        await supervisor.wait_closed()
        record = await call_record(http, call_id)
        await caller.close()
    notes = events_of(record, "supervisor.note")
    assert [(n["by"], n["text"]) for n in notes] == [(pid, "Mention the discount.")], (
        "the agent was given only the joined supervisor's whisper"
    )
