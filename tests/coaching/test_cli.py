"""``parley rooms …`` against a running server: a supervisor's whole session from the command line."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from parley.cli import app
from tests.coaching.kit import KEY, api, make_agent, room_server


async def _parley(base: str, *args: str, key: str | None = KEY) -> tuple[int, str, str]:
    """Run ``parley rooms <args>`` (in a thread: the server shares this loop); exit code, out, err."""
    env = {"PARLEY_URL": base, "PARLEY_API_KEY": key or ""}
    result = await asyncio.to_thread(CliRunner().invoke, app, ["rooms", *args], env=env)
    return result.exit_code, result.stdout, result.stderr


async def _json(base: str, *args: str) -> Any:
    code, out, err = await _parley(base, *args, "--json")
    assert code == 0, err
    return json.loads(out)


async def test_a_supervisor_runs_a_room_from_the_command_line(tmp_path: Path) -> None:
    async with room_server(tmp_path) as served, api(served) as http:
        await make_agent(http)
        room = await _json(served.base, "create", "--agent", "sales", "--name", "Renewal")
        assert room["agent"] == "sales" and room["name"] == "Renewal"

        code, out, _ = await _parley(served.base, "add", room["id"], "--role", "coach", "--mode", "whisper")
        assert code == 0 and "token: " in out and f"/voice/rep.html?room={room['id']}" in out
        coach = next(
            p for p in await _shown(served.base, room["id"]) if p["role"] == "coach" and p["id"] != "ai-coach"
        )
        assert (coach["mode"], coach["connected"]) == ("whisper", False)

        code, out, _ = await _parley(served.base, "mode", room["id"], coach["id"], "barge")
        assert code == 0 and "barge" in out
        assert {p["id"]: p["mode"] for p in await _shown(served.base, room["id"])}[coach["id"]] == "barge"
        code, _, err = await _parley(served.base, "mode", room["id"], coach["id"], "shout")
        assert code == 2 and "mode must be one of" in err

        listed = await _json(served.base, "list")
        assert [r["id"] for r in listed] == [room["id"]]
        code, out, _ = await _parley(served.base, "show", room["id"])
        assert code == 0 and coach["id"] in out and "ai-coach" in out

        code, _, _ = await _parley(served.base, "remove", room["id"], coach["id"])
        assert code == 0
        assert coach["id"] not in [p["id"] for p in await _shown(served.base, room["id"])]
        code, out, _ = await _parley(served.base, "end", room["id"])
        assert code == 0 and room["call_id"] in out

        code, _, err = await _parley(served.base, "show", room["id"])
        assert code == 1 and "404" in err
        code, _, err = await _parley(served.base, "list", key=None)
        assert code == 2 and "API key" in err
        code, _, err = await _parley(served.base, "list", key="pk_wrong")
        assert code == 1 and "401" in err and "pk_wrong" not in err


async def _shown(base: str, room_id: str) -> list[dict[str, Any]]:
    return list((await _json(base, "show", room_id))["participants"])


def test_without_a_url_the_commands_reach_the_local_server_on_its_configured_port(monkeypatch: Any) -> None:
    """An operator who runs ``parley serve`` with PARLEY_PORT=8611 is not sent to port 8000."""
    from parley.config import get_settings

    monkeypatch.delenv("PARLEY_URL", raising=False)
    monkeypatch.setenv("PARLEY_PORT", "1")  # nothing listens there
    monkeypatch.setenv("PARLEY_HOST", "0.0.0.0")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["rooms", "list", "--key", KEY])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    assert "cannot reach the server at http://127.0.0.1:1:" in result.stderr
