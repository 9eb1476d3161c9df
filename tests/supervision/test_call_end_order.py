"""The end of a supervised call on its timeline: the supervisors leave because the call ended (``room.left``
says ``call_ended``, as they were told), and the record reads in time order with ``session.ended`` last.

Before, ``session.ended`` (held back until the supervisors had left) kept the earlier time it was made
at, so the timeline went backwards at its very end, and the room's ``room.left`` said ``room_closed``.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

from tests.coaching.kit import api, join
from tests.supervision.kit import ai_server, call_record, events_of, make_ai_agent, start_call, supervise


async def test_supervisors_leave_as_the_call_ends_and_the_timeline_stays_in_order(tmp_path: Path) -> None:
    async with ai_server(tmp_path) as (served, _), api(served) as http:
        call_id, caller, _ = await start_call(served, http, await make_ai_agent(http))
        listening = await supervise(http, call_id, name="Dana")
        barging = await supervise(http, call_id, mode="barge", name="Manager")
        listener, _ = await join(listening)
        barger, _ = await join(barging)
        await barger.wait_for("handover", 5, status="started")

        await caller.send({"type": "end"})
        for supervisor in (listener, barger):
            ended = await supervisor.wait_for("ended", 5)
            assert ended["reason"] == "call_ended"
            await supervisor.wait_closed()
            assert supervisor.ws.close_reason == "call_ended"
        record = await call_record(http, call_id)
        await caller.close()

    events = record["events"]
    times = [e["t_ms"] for e in events]
    backwards = [
        (before["type"], before["t_ms"], after["type"], after["t_ms"])
        for before, after in pairwise(events)
        if after["t_ms"] < before["t_ms"]
    ]
    assert not backwards, f"the timeline goes backwards: {backwards}"
    assert times == sorted(times)
    assert events[-1]["type"] == "session.ended", "the supervisors leave before the call's end is recorded"

    left = {e["participant_id"]: e["reason"] for e in events_of(record, "room.left")}
    supervisors = {listening["participant_id"], barging["participant_id"]}
    assert supervisors <= left.keys()
    assert {left[pid] for pid in supervisors} == {"call_ended"}, left
    assert set(left.values()) == {"call_ended"}, "the caller's and the agent's legs left for the same reason"
    # The supervisor had the call when it ended: it was never handed back to the agent.
    assert [e["type"] for e in events if e["type"].startswith("handover")] == ["handover.started"]
    assert record["status"] == "completed"


async def test_when_the_last_supervisor_leaves_the_room_says_why_it_closed(tmp_path: Path) -> None:
    async with ai_server(tmp_path) as (served, _), api(served) as http:
        call_id, caller, _ = await start_call(served, http, await make_ai_agent(http))
        invitation = await supervise(http, call_id, name="Dana")
        supervisor, _ = await join(invitation)
        removed = await http.delete(f"/v1/calls/{call_id}/supervisors/{invitation['participant_id']}")
        assert removed.status_code == 204, removed.text
        await supervisor.wait_closed()
        await caller.send({"type": "end"})
        record = await call_record(http, call_id)
        await caller.close()

    left = [(e["participant_id"], e["reason"]) for e in events_of(record, "room.left")]
    assert left == [
        (invitation["participant_id"], "removed"),
        ("caller", "no_supervisors"),
        ("agent", "no_supervisors"),
    ]
    times = [e["t_ms"] for e in record["events"]]
    assert times == sorted(times) and record["events"][-1]["type"] == "session.ended"
