"""How long a phone call lasted, and what its line cost, against the local Twilio: the number reports only
``completed`` (Twilio's default for a number's status callback), so the call's start is the session's own
and its end is witnessed twice, by Twilio's callback (stamped to the second) and by the session."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.engine.harness import agent
from tests.phone.conftest import PARLEY_NUMBER, PERSON, PhoneLab, call_id_of, phone_lab


def moment(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def settled(lab: PhoneLab, call_id: str, limit_s: float = 5.0) -> dict[str, Any]:
    """The call's record once both witnesses of the hang-up landed (the session's end, and Twilio's
    ``completed`` with its ``CallDuration``), or as it is after ``limit_s``."""
    record = await lab.call_record(call_id)
    for _ in range(int(limit_s / 0.1)):
        ended = any(e["type"] == "session.ended" for e in record["events"])
        if ended and "carrier_duration_s" in (record["metrics"] or {}):
            break
        await asyncio.sleep(0.1)
        record = (await lab.api.get(f"/v1/calls/{call_id}")).json()
    return record


async def test_short_calls_last_what_the_caller_was_on_the_line_and_each_costs_its_minute(
    tmp_path: Path,
) -> None:
    records: list[tuple[float, dict[str, Any]]] = []
    async with phone_lab(tmp_path) as lab:
        await lab.add_agent(agent(name="front-desk", first_message="Hello, front desk."))
        for hold_s in (0.3, 1.4):
            call = lab.twilio.place_inbound(
                PERSON,
                PARLEY_NUMBER,
                f"{lab.base}/twilio/voice",
                status_callback=f"{lab.base}/twilio/status",
                status_callback_events=("completed",),
            )
            caller = await call.wait_connected()
            await asyncio.sleep(hold_s)
            await caller.hang_up()
            await call.wait_ended()
            records.append((hold_s, await settled(lab, call_id_of(call))))

    for hold_s, record in records:
        [ended] = [e for e in record["events"] if e["type"] == "session.ended"]
        times = {k: record[k] for k in ("started_at", "ended_at", "duration_s", "end_reason")}
        assert moment(record["ended_at"]) == moment(ended["at"]), f"not when its session ended: {times}"
        assert record["duration_s"] > hold_s * 0.5, (
            f"a {hold_s} s call was recorded as {record['duration_s']} s"
        )
        minutes = [line for line in record["costs"]["lines"] if line["kind"] == "telephony_minutes"]
        assert [(line["provider"], line["quantity"]) for line in minutes] == [("twilio", 1.0)]
        assert record["metrics"]["carrier_duration_s"] in (0, 1, 2)
