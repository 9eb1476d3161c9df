"""``parley bench leads``: five leads through a server in a child process, the local SMTP server and the
local Twilio; every matched business told once by email and text, and a call-back placed and reported."""

from __future__ import annotations

from parley.bench.leads import BUSINESSES, PROFILES, _lead, percentile, run_leads_bench


def test_the_leads_spread_over_the_businesses_areas_and_have_distinct_numbers() -> None:
    leads = [_lead(i) for i in range(40)]
    assert len({lead["phone"] for lead in leads}) == 40
    assert {lead["category"] for lead in leads} == {b["category"] for b in BUSINESSES}
    assert len(PROFILES) == 4
    assert percentile([], 50) is None and percentile([7.0], 99) == 7.0
    assert percentile([float(v) for v in range(1, 101)], 50) == 50.5


async def test_five_leads_are_all_notified_once_and_a_callback_is_placed() -> None:
    said: list[str] = []
    report = await run_leads_bench(said.append, leads=5, callbacks=1, concurrency=5)
    assert report["leads"] == 5 and report["notified"] == 5 and report["duplicates"] == 0
    # leads 0 and 4 are in Brooklyn (both plumbers), 1 in Upper Manhattan, 2 in Chicago, 3 in San Francisco
    assert report["notifications_expected"] == report["notifications_delivered"] == 2 * (2 + 1 + 1 + 1 + 2)
    assert 0 < report["notification_p50_ms"] <= report["notification_p99_ms"] < 30_000
    assert report["callbacks"] == report["callbacks_placed"] == 1
    assert report["callback_placement_p50_ms"] is not None and report["callback_placement_p50_ms"] < 30_000
    assert report["callback_outcomes"] == 1, "the call-back's outcome was emailed to the business"
    assert said and said[0].startswith("starting the server")
