"""``parley rooms …`` and ``parley supervise …`` on an 80-column terminal: what a supervisor copies (the
socket URL, the page URL, the token, the ids) is printed whole, one line each, so pasting it works.

Before, Rich folded the socket and page URLs across lines at the terminal's width: a copied URL ended
part-way through its token, and the listings cut room and call ids to ``room_3f…``.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from typer.testing import CliRunner

from parley.cli import app
from tests.coaching.kit import KEY, api, join, make_agent, room_server
from tests.supervision.kit import ai_server, make_ai_agent, start_call

COLUMNS = "80"


async def _parley(base: str, *args: str) -> str:
    """``parley <args>`` on an 80-column terminal (in a thread: the server shares this loop); its output."""
    env = {"PARLEY_URL": base, "PARLEY_API_KEY": KEY, "COLUMNS": COLUMNS}
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.stdout


def _field(output: str, label: str) -> str:
    """The value of the line ``label: value`` (exactly one such line)."""
    (value,) = [
        line.removeprefix(f"{label}: ") for line in output.splitlines() if line.startswith(f"{label}: ")
    ]
    return value


def _token_of(url: str) -> str:
    (token,) = parse_qs(urlsplit(url).query)["token"]
    return token


async def test_a_copied_room_invitation_works_and_listings_keep_whole_ids(tmp_path: Path) -> None:
    async with room_server(tmp_path) as served, api(served) as http:
        await make_agent(http)
        room: dict[str, Any] = json.loads(
            await _parley(served.base, "rooms", "create", "--agent", "sales", "--name", "Renewal", "--json")
        )
        created = await _parley(served.base, "rooms", "create", "--agent", "sales")
        assert any(
            line.startswith("invite its participants: parley rooms add room_")
            for line in created.splitlines()
        )

        added = await _parley(served.base, "rooms", "add", room["id"], "--role", "coach", "--name", "Dana")
        token, socket, page = _field(added, "token"), _field(added, "socket"), _field(added, "page")
        assert len(socket) > int(COLUMNS), "a URL wider than the terminal (what used to be folded)"
        assert _token_of(socket) == token and _token_of(page) == token
        assert page.startswith(f"{served.base}/voice/rep.html?room={room['id']}&")
        coach, _ = await join({"ws_url": socket})  # pasted as printed: the coach is in
        try:
            listed = await _parley(served.base, "rooms", "list")
            assert room["id"] in listed and room["call_id"] in listed
            shown = await _parley(served.base, "rooms", "show", room["id"])
            joined: list[dict[str, Any]] = (await http.get(f"/v1/rooms/{room['id']}")).json()["participants"]
            assert any(p["connected"] and p["role"] == "coach" for p in joined)
            for participant in joined:
                assert participant["id"] in shown, f"{participant['id']} cut in:\n{shown}"
        finally:
            await coach.close()


async def test_a_copied_supervisor_socket_works(tmp_path: Path) -> None:
    async with ai_server(tmp_path) as (served, _), api(served) as http:
        call_id, caller, _ = await start_call(served, http, await make_ai_agent(http))
        joined = await _parley(served.base, "supervise", "join", call_id, "--name", "Dana")
        socket = _field(joined, "socket")
        assert len(socket) > int(COLUMNS)
        supervisor, _ = await join({"ws_url": socket})  # pasted as printed: the supervisor is in
        listed = await _parley(served.base, "supervise", "list", call_id)
        (only,) = (await http.get(f"/v1/calls/{call_id}/supervisors")).json()["supervisors"]
        assert only["connected"] and only["id"] in listed
        await supervisor.close()
        await caller.close()
