"""``parley supervise …`` against a running server: a supervisor's session on a live AI call from the
command line (join, list, switch mode, type a whisper, leave)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from parley.cli import app
from tests.coaching.kit import KEY, api, join
from tests.supervision.kit import ai_server, call_record, events_of, make_ai_agent, start_call


async def _parley(base: str, *args: str) -> tuple[int, str, str]:
    """Run ``parley supervise <args>`` (in a thread: the server shares this loop); exit code, out, err."""
    env = {"PARLEY_URL": base, "PARLEY_API_KEY": KEY}
    result = await asyncio.to_thread(CliRunner().invoke, app, ["supervise", *args], env=env)
    return result.exit_code, result.stdout, result.stderr


async def test_a_supervisor_works_a_live_call_from_the_command_line(tmp_path: Path) -> None:
    async with ai_server(tmp_path) as (served, _), api(served) as http:
        call_id, caller, _ = await start_call(served, http, await make_ai_agent(http))

        code, out, _ = await _parley(served.base, "join", call_id, "--mode", "whisper", "--name", "Dana")
        assert code == 0, out
        found = re.search(r"supervisor (s_\w+) \(whisper\)", out)
        assert found is not None, out
        pid = found.group(1)
        assert f"/v1/calls/{call_id}/supervisors/ws?token=" in out
        socket = re.search(r"socket: (\S+)", out)
        assert socket is not None, out

        code, out, _ = await _parley(served.base, "list", call_id, "--json")
        listed: dict[str, Any] = json.loads(out)
        assert code == 0 and [(s["id"], s["mode"], s["name"]) for s in listed["supervisors"]] == [
            (pid, "whisper", "Dana")
        ]
        code, out, _ = await _parley(served.base, "mode", call_id, pid, "barge")
        assert code == 0 and "barge" in out
        code, _, err = await _parley(served.base, "mode", call_id, pid, "speak")
        assert code == 2 and "mode must be one of" in err
        code, _, err = await _parley(served.base, "whisper", call_id, pid, "Not yet joined.")
        assert code == 1 and "join first" in err, "a whisper needs the supervisor on the call"
        supervisor, _ = await join({"ws_url": socket.group(1)})  # the socket `join` printed
        code, out, _ = await _parley(served.base, "whisper", call_id, pid, "Offer the yearly plan.")
        assert code == 0 and "whispered" in out
        code, out, _ = await _parley(served.base, "leave", call_id, pid)
        assert code == 0
        await supervisor.wait_closed()
        code, out, _ = await _parley(served.base, "list", call_id)
        assert code == 0 and pid not in out
        code, _, err = await _parley(served.base, "join", "call_nope")
        assert code == 1 and "404" in err

        await caller.send({"type": "end"})
        record = await call_record(http, call_id)
        await caller.close()
    notes = events_of(record, "supervisor.note")
    assert [(n["kind"], n["by"], n["text"]) for n in notes] == [("whisper", pid, "Offer the yearly plan.")]
