"""``parley twilio-sim``: a local Twilio a developer can point Parley at."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
from typer.testing import CliRunner

from parley.cli import app

ACCOUNT_SID = "AC" + "12" * 16
TOKEN = "cli-token"


def test_a_broken_scenario_is_refused_before_serving(tmp_path: Path) -> None:
    scenario = tmp_path / "calls.yaml"
    scenario.write_text("callees: {'+14155550100': {outcomes: [voicemail]}}")
    result = CliRunner().invoke(app, ["twilio-sim", "--scenario", str(scenario)])
    assert result.exit_code == 2
    assert "outcomes" in result.output


@contextlib.contextmanager
def running(*args: str) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "parley.cli", "twilio-sim", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        process.terminate()
        process.wait(10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_serves_the_rest_api_with_the_scenario(tmp_path: Path) -> None:
    scenario = tmp_path / "calls.yaml"
    scenario.write_text("callees: {'+14155550100': {outcomes: [busy]}}")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    options = ["--port", str(port), "--account-sid", ACCOUNT_SID, "--auth-token", TOKEN]
    with running(*options, "--scenario", str(scenario)):
        async with httpx.AsyncClient(base_url=base) as http:
            async with asyncio.timeout(30):
                while True:
                    with contextlib.suppress(httpx.TransportError):
                        await http.get("/sim/calls")
                        break
                    await asyncio.sleep(0.1)
            created = await http.post(
                f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json",
                data={
                    "To": "+14155550100",
                    "From": "+14155550199",
                    "Twiml": "<Response><Hangup/></Response>",
                },
                auth=(ACCOUNT_SID, TOKEN),
            )
            assert created.status_code == 201
            sid = created.json()["sid"]
            async with asyncio.timeout(10):
                while not (call := (await http.get(f"/sim/calls/{sid}")).json())["ended"]:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            assert call["status"] == "busy"
