"""Threat: hostile input to the REST API crashes a route (a 500 that may leak internals and hides the
real fault), stores what no client can read back, or bloats the store.

Every probe here gave a 500 or stored junk before: integers too large for their column, unicode digits
that ``int()`` accepts, an invoice month the calendar cannot end, NaN and Infinity in JSON, NUL
characters PostgreSQL cannot store, dates UTC cannot express, forged page cursors, and bodies of any
size. Each must now be refused with a 4xx that says what was wrong, and leave nothing behind. The app is
the server's own (``create_platform_app``: middleware, error handlers and routes), on both databases.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from parley.config import Settings
from parley.engine.agent import default_agent, load_agent
from tests.api.server_app import server_app_client

KEY = "pk_security-http-input-key"
HUGE = "99999999999999999999999"
CAP = 1024 * 1024


@dataclass
class Api:
    http: httpx.AsyncClient
    agent_id: str
    call_id: str

    async def agent_names(self) -> list[str]:
        listed = await self.http.get("/v1/agents", params={"limit": 200})
        assert listed.status_code == 200, listed.text
        assert len(listed.content) < 64 * 1024, "the agent list stays small: nothing refused was stored"
        return [
            a["name"] for a in listed.json()["data"] if a["source"] == "api"
        ]  # not the file agents' records


@pytest.fixture
async def api(db_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    settings = Settings(
        _env_file=None, data_dir=tmp_path, database_url=db_url, api_key=KEY, max_request_body_bytes=CAP
    )

    async with server_app_client(settings, KEY) as http:
        made = await http.post("/v1/agents", json={"name": "seed"})
        assert made.status_code == 201, made.text
        agent_id = made.json()["id"]
        session = await http.post(f"/v1/agents/{agent_id}/sessions")
        assert session.status_code == 201, session.text
        yield Api(http, agent_id, session.json()["call_id"])


def _field_named(response: httpx.Response, field: str) -> bool:
    return any(field in [str(part) for part in error["loc"]] for error in response.json()["detail"])


# --- integers too large for their columns ------------------------------------------------------------


@pytest.mark.parametrize("version", [HUGE, str(2**31), "0", "-1"])
async def test_agent_version_out_of_range_is_422(api: Api, version: str) -> None:
    """Threat: ``?version=`` larger than the 32-bit column fails in the database as a 500."""
    got = await api.http.get(f"/v1/agents/{api.agent_id}", params={"version": version})
    assert got.status_code == 422, got.text
    assert _field_named(got, "version")


@pytest.mark.parametrize("after", [HUGE, str(2**31), "-1"])
async def test_event_feed_after_out_of_range_is_422(api: Api, after: str) -> None:
    """Threat: ``?after=`` of the call's event feed larger than the sequence column is a 500."""
    got = await api.http.get(f"/v1/calls/{api.call_id}/events", params={"after": after})
    assert got.status_code == 422, got.text
    assert _field_named(got, "after")


@pytest.mark.parametrize(
    "last_event_id",
    [HUGE.encode(), str(2**31).encode(), "²".encode("latin-1"), "١٢".encode(), b"-3", b"12abc"],
    ids=["huge", "over-int32", "superscript-two", "arabic-indic-digits", "negative", "trailing-junk"],
)
async def test_event_feed_bad_last_event_id_is_400(api: Api, last_event_id: bytes) -> None:
    """Threat: a ``Last-Event-ID`` that ``int()`` accepts but the database cannot hold (a huge number,
    a unicode digit such as ``²``), or that ``int()`` refuses, is a 500."""
    got = await api.http.get(f"/v1/calls/{api.call_id}/events", headers=[(b"Last-Event-ID", last_event_id)])
    assert got.status_code == 400, got.text
    assert "Last-Event-ID" in got.json()["detail"]


# --- invoices ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [{"year": 9999, "month": 12}, {"year": 9999, "month": 1}, {"year": 10000, "month": 1}],
    ids=["calendar-end", "far-future", "year-10000"],
)
async def test_invoice_for_an_impossible_or_future_month_is_422(api: Api, body: dict[str, int]) -> None:
    """Threat: ``POST /v1/invoices {"year": 9999, "month": 12}`` overflows the calendar (a 500); a month
    that has not begun was stored as an empty draft invoice."""
    got = await api.http.post("/v1/invoices", json=body)
    assert got.status_code == 422, got.text
    assert "9999" in got.text or "10000" in got.text or "begun" in got.text
    assert (await api.http.get("/v1/invoices")).json() == []


# --- JSON numbers JSON does not have -----------------------------------------------------------------


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
@pytest.mark.parametrize(
    "template",
    [
        '{{"name": "n", "config": {{"temperature": {n}}}}}',
        '{{"name": "n", "config": {{"endpointing": {{"start_threshold": {n}}}}}}}',
        '{{"name": "n", "config": {{"tools": [{{"name": "t", "timeout_s": {n}}}]}}}}',
        '{{"name": "n", "config": {{"tools": [{{"name": "t", "parameters": {{"x": [{n}]}}}}]}}}}',
        '{{"name": "n", "config": {{"tools": [{{"name": "t", "kind": "static", "result": {n}}}]}}}}',
    ],
    ids=["temperature", "endpointing", "tool-timeout", "tool-parameters", "tool-result"],
)
async def test_non_finite_numbers_are_422_and_not_stored(api: Api, template: str, number: str) -> None:
    """Threat: NaN, Infinity or 1e400 (which Python reads as Infinity) in a JSON body is stored, then
    every read of the agent fails to serialize (a 500), or the 422 echoing it does."""
    body = template.format(n=number)
    got = await api.http.post("/v1/agents", content=body, headers={"Content-Type": "application/json"})
    assert got.status_code == 422, got.text
    patched = await api.http.patch(
        f"/v1/agents/{api.agent_id}", content=body, headers={"Content-Type": "application/json"}
    )
    assert patched.status_code == 422, patched.text
    assert await api.agent_names() == ["seed"]
    versions = (await api.http.get(f"/v1/agents/{api.agent_id}/versions")).json()
    assert [v["version"] for v in versions] == [1]


# --- sizes -------------------------------------------------------------------------------------------


async def test_a_50_mib_description_is_413_before_it_is_read(api: Api) -> None:
    """Threat: one request with a 50 MiB agent description fills memory and the store."""
    body = json.dumps({"name": "big", "description": "x" * (50 * 1024 * 1024)}).encode()
    got = await api.http.post("/v1/agents", content=body, headers={"Content-Type": "application/json"})
    assert got.status_code == 413, got.text
    assert await api.agent_names() == ["seed"]


async def test_a_chunked_body_over_the_cap_is_413(api: Api) -> None:
    """Threat: a body without ``Content-Length`` (chunked) streams past any cap that only reads the
    header."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"name": "streamed", "description": "'
        for _ in range(3):
            yield b"x" * CAP
        yield b'"}'

    got = await api.http.post("/v1/agents", content=chunks(), headers={"Content-Type": "application/json"})
    assert got.status_code == 413, got.text
    assert await api.agent_names() == ["seed"]


async def test_a_declared_length_over_the_cap_is_refused_by_the_real_server(
    db_url: str, tmp_path: Path
) -> None:
    """Threat: the server reads a huge body off the socket before refusing it. A client that declares
    50 MiB and sends a little gets its 413 at once, from uvicorn as deployed."""
    from tests.server.conftest import fast_engines, serving

    async with serving(
        fast_engines([], []), platform=True, data_dir=tmp_path, database_url=db_url, api_key=KEY
    ) as served:
        host, port = served.base.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        head = (
            "POST /v1/agents HTTP/1.1\r\nHost: parley.test\r\n"
            f"Authorization: Bearer {KEY}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {50 * 1024 * 1024}\r\n\r\n"
        )
        writer.write(head.encode() + b'{"name": "big", "description": "' + b"x" * 65536)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
        assert status_line.split()[1] == b"413", status_line
        async with httpx.AsyncClient(
            base_url=served.base, headers={"Authorization": f"Bearer {KEY}"}
        ) as http:
            listed = (await http.get("/v1/agents")).json()["data"]
            assert [a["name"] for a in listed if a["source"] == "api"] == [], "nothing of the refused body"


def _config(**fields: Any) -> dict[str, Any]:
    return {"name": "capped", "config": fields}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "n" * 101}, "name"),
        ({"name": "d", "description": "d" * 2001}, "description"),
        (_config(name="n" * 101), "name"),
        (_config(system_prompt="p" * 20_001), "system_prompt"),
        (_config(knowledge=["fact"] * 51), "knowledge"),
        (_config(knowledge=["f" * 4001]), "knowledge"),
        (_config(first_message="h" * 1001), "first_message"),
        (_config(error_message="e" * 1001), "error_message"),
        (_config(tools=[{"name": "t", "description": "d" * 2001}]), "description"),
        (_config(tools=[{"name": "t" * 65}]), "name"),
        (_config(tools=[{"name": f"t{i}"} for i in range(51)]), "tools"),
        (_config(interruption={"backchannels": ["b" * 51]}), "backchannels"),
        (_config(max_reply_tokens=10**9), "max_reply_tokens"),
        (_config(endpointing={"max_silence_ms": 10**12}), "max_silence_ms"),
        (_config(tools=[{"name": "t", "parameters": json.loads("[" * 40 + "]" * 40)}]), "parameters"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
async def test_text_and_list_caps_are_422_naming_the_field(
    api: Api, body: dict[str, Any], field: str
) -> None:
    """Threat: a body under the size cap still holds a 1 MiB name or thousands of knowledge items,
    each of which goes into every prompt and every agent listing."""
    got = await api.http.post("/v1/agents", json=body)
    assert got.status_code == 422, got.text
    assert _field_named(got, field), got.text
    assert await api.agent_names() == ["seed"]


def test_the_shipped_agents_fit_the_caps() -> None:
    """Threat: caps so tight that they refuse honest agents; every agent shipped with Parley loads."""
    default_agent()
    for path in (Path(__file__).resolve().parents[2] / "parley" / "agents").glob("*.yaml"):
        load_agent(path)


# --- NUL characters ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "nu\x00l"}, "name"),
        ({"name": "d", "description": "a\x00b"}, "description"),
        (_config(system_prompt="Be\x00kind."), "system_prompt"),
        (_config(knowledge=["ok", "b\x00d"]), "knowledge"),
        (_config(first_message="\x00"), "first_message"),
        (_config(tools=[{"name": "t", "parameters": {"type": "object", "k\x00": {}}}]), "parameters"),
        (_config(tools=[{"name": "t", "kind": "static", "result": {"a": ["\x00"]}}]), "result"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
async def test_nul_in_a_body_string_is_422_naming_the_field(
    api: Api, body: dict[str, Any], field: str
) -> None:
    """Threat: PostgreSQL cannot store a NUL in text or JSONB, so it failed there as a 500 (SQLite
    stored it, and every reader had to cope)."""
    got = await api.http.post("/v1/agents", json=body)
    assert got.status_code == 422, got.text
    assert _field_named(got, field), got.text
    assert "NUL" in got.text
    patched = await api.http.patch(f"/v1/agents/{api.agent_id}", json=body)
    assert patched.status_code == 422, patched.text
    assert await api.agent_names() == ["seed"]


@pytest.mark.parametrize(
    "path",
    [
        "/v1/agents/a%00b",
        "/v1/agents/a%00b/versions",
        "/v1/calls/c%00",
        "/v1/calls/c%00/events",
        "/v1/invoices/i%00",
        "/v1/calls?agent_id=a%00",
        "/v1/agents?cursor=%00",
    ],
)
async def test_nul_in_a_path_or_query_is_422(api: Api, path: str) -> None:
    """Threat: a NUL in an id reaches a PostgreSQL query and fails there as a 500."""
    got = await api.http.get(path)
    assert got.status_code == 422, got.text
    assert "NUL" in got.text


# --- dates, cursors, pages ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/calls", {"since": "0001-01-01T00:00:00+05:00"}),
        ("/v1/calls", {"until": "9999-12-31T23:59:59-05:00"}),
        ("/v1/usage", {"start": "0001-01-01T00:00:00+05:00"}),
        ("/v1/usage", {"end": "9999-12-31T23:59:59-05:00"}),
        ("/v1/calls", {"since": "99999-01-01"}),
        ("/v1/calls", {"limit": "0"}),
        ("/v1/calls", {"limit": HUGE}),
        ("/v1/agents", {"limit": "201"}),
    ],
)
async def test_dates_and_page_sizes_out_of_range_are_422(api: Api, path: str, params: dict[str, str]) -> None:
    """Threat: a date UTC cannot express (year 1 east of Greenwich, 9999 west of it) overflows on its
    way to the database, a 500; an unbounded page size reads a whole table."""
    got = await api.http.get(path, params=params)
    assert got.status_code == 422, got.text


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        _cursor(["2020-01-01T00:00:00", "agent_x"]),  # naive: the store refuses naive datetimes
        _cursor(["0001-01-01T00:00:00+05:00", "agent_x"]),  # no such time in UTC
        _cursor(["2020-01-01T00:00:00+00:00", 7]),
        _cursor(["2020-01-01T00:00:00+00:00", "a\x00"]),
        _cursor({"a": 1, "b": 2}),
        "not-base64!",
    ],
)
async def test_forged_cursors_are_400(api: Api, cursor: str) -> None:
    """Threat: ``next_cursor`` comes back from the client; a forged one failed inside the query (500)."""
    for path in ("/v1/agents", "/v1/calls"):
        got = await api.http.get(path, params={"cursor": cursor})
        assert got.status_code == 400, got.text
        assert got.json()["detail"] == "invalid cursor"


async def test_the_probes_left_the_store_as_it_was(api: Api) -> None:
    """Threat: a refused write that was half-stored anyway; after a round of them nothing new is listed."""
    await api.http.post("/v1/agents", json={"name": "x\x00"})
    await api.http.post("/v1/agents", content=b'{"name": "y", "config": {"temperature": NaN}}')
    await api.http.post("/v1/invoices", json={"year": 9999, "month": 12})
    assert await api.agent_names() == ["seed"]
    assert (await api.http.get("/v1/invoices")).json() == []
    assert len((await api.http.get("/v1/calls")).json()["data"]) == 1
    for path in ("/v1/agents", "/v1/calls", "/v1/usage", "/v1/invoices"):
        assert (await api.http.get(path)).status_code == 200
