"""No lead notification is lost to a crash: a lead is submitted to a real server whose SMTP server is down,
the server is killed (SIGKILL) with the email still owed, and a new server on the same database delivers
it, exactly once, when the SMTP server is back.

The servers are real ones in their own processes (``sigkill_server.py``); this process is the SMTP server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from parley.bench.server_process import READY
from parley.notifications.mailbox import Mailbox
from tests.notifications.conftest import smtp_server, until
from tests.notifications.sigkill_server import API_KEY
from tests.store.services import free_port

ROOT = Path(__file__).resolve().parents[2]


@contextlib.asynccontextmanager
async def server(
    data_dir: Path, database_url: str, smtp_port: int
) -> AsyncIterator[tuple[httpx.AsyncClient, int]]:
    """A server process: an API client and its pid; the block's end stops it (SIGTERM) unless it was
    killed."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.notifications.sigkill_server",
        str(data_dir),
        database_url,
        str(smtp_port),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    drain: asyncio.Task[bytes] | None = None
    try:
        async with asyncio.timeout(60):
            while not (line := (await process.stdout.readline()).decode()).startswith(READY):
                assert line, "the server exited before it served"
        port = int(line[len(READY) :])
        drain = asyncio.create_task(process.stdout.read())  # the pipe never fills
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers) as api:
            yield api, process.pid
    finally:
        if process.returncode is None:
            process.terminate()
        await asyncio.wait_for(process.wait(), 30)
        if drain is not None:
            await drain


async def email_of(api: httpx.AsyncClient, lead_id: str) -> dict[str, Any]:
    listed = await api.get(f"/v1/leads/{lead_id}/notifications")
    assert listed.status_code == 200, listed.text
    [email] = [n for n in listed.json() if n["channel"] == "email"]
    return dict(email)


async def test_an_email_owed_when_the_server_is_killed_arrives_exactly_once(tmp_path: Path) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'parley.db'}"
    smtp_port = free_port()  # nothing listens there yet

    async with server(tmp_path, database_url, smtp_port) as (api, pid):
        made = await api.post(
            "/v1/businesses",
            json={
                "name": "Bay Plumbing Co.",
                "category": "plumbing",
                "postal_codes": ["94107"],
                "hours": {},
                "time_zone": "America/Los_Angeles",
                "notify_email": "office@bayplumbing.example.com",
                "notify_phone": "+14155550123",
            },
        )
        assert made.status_code == 201, made.text
        submitted = await api.post(
            "/v1/leads",
            json={
                "name": "Ada Lovelace",
                "phone": "+14155550199",
                "category": "plumbing",
                "postal_code": "94107",
            },
        )
        assert submitted.status_code == 201, submitted.text
        lead_id = submitted.json()["id"]

        async def tried() -> bool:
            return int((await email_of(api, lead_id))["attempts"]) >= 1

        await until(tried)
        os.kill(pid, signal.SIGKILL)

    mailbox = Mailbox()
    async with smtp_server(mailbox, smtp_port), server(tmp_path, database_url, smtp_port) as (api, _):
        [mail] = await mailbox.wait_for(1, timeout_s=30)

        async def sent() -> bool:
            return bool((await email_of(api, lead_id))["status"] == "sent")

        await until(sent)
        email = await email_of(api, lead_id)

    assert mail.message_id == f"<{email['id']}@parley>" == email["provider_id"]
    assert mailbox.message_ids() == [mail.message_id], "exactly once"
    assert email["attempts"] >= 2, "the attempts before the kill were kept"
    assert mail.subject == "New lead: Ada Lovelace (plumbing)"
