"""``parley businesses …`` and ``parley leads …`` on the store in PARLEY_DATA_DIR (SQLite)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from structlog.testing import capture_logs
from typer.testing import CliRunner, Result

from parley.commands.leads import businesses_app, leads_app, parse_hours
from parley.config import get_settings


@pytest.fixture
def parley(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[typer.Typer]:
    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PARLEY_OPERATOR_EMAIL", "ops@parley.test")
    monkeypatch.delenv("PARLEY_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    root = typer.Typer()
    root.add_typer(businesses_app, name="businesses")
    root.add_typer(leads_app, name="leads")
    with capture_logs():  # the real CLI logs to stderr; unconfigured structlog would print to stdout
        yield root
    get_settings.cache_clear()


def run(app: typer.Typer, *args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def test_hours_are_written_as_day_ranges() -> None:
    assert parse_hours(["mon-wed=09:00-17:00", "sat,sun=10:00-14:00", "fri=22:00-02:00"]) == {
        "mon": [["09:00", "17:00"]],
        "tue": [["09:00", "17:00"]],
        "wed": [["09:00", "17:00"]],
        "sat": [["10:00", "14:00"]],
        "sun": [["10:00", "14:00"]],
        "fri": [["22:00", "02:00"]],
    }
    assert list(parse_hours(["fri-mon=08:00-12:00"])) == ["fri", "sat", "sun", "mon"]
    with pytest.raises(typer.BadParameter):
        parse_hours(["weekdays=9-5"])


def test_businesses_and_leads_from_the_command_line(parley: typer.Typer) -> None:
    # A plumber that serves one postal code and is always open (no --hours).
    added = run(
        parley,
        "businesses",
        "add",
        "Hudson Plumbing",
        "--category",
        "Plumbing",
        "--email",
        "desk@hudson.example.com",
        "--phone",
        "(212) 555-0100",
        "--time-zone",
        "America/New_York",
        "--postal-code",
        "11216",
        "--json",
    )
    assert added.exit_code == 0, added.output
    business = json.loads(added.stdout)
    assert business["notify_phone"] == "+12125550100" and business["hours"] == {}

    bad = run(parley, "businesses", "add", "X", "--category", "plumbing", "--email", "nope", "--phone",
              "+12125550100", "--time-zone", "UTC", "--postal-code", "1")  # fmt: skip
    assert bad.exit_code == 2 and "notify_email" in bad.output

    submitted = run(
        parley,
        "leads",
        "submit",
        "--name",
        "Ada",
        "--phone",
        "201 555 0123",
        "--category",
        "plumbing",
        "--postal-code",
        "11216",
        "--consent",
        "--json",
    )
    assert submitted.exit_code == 0, submitted.output
    lead = json.loads(submitted.stdout)
    assert lead["status"] == "matched" and lead["source"] == "cli" and lead["consent_to_call"] is True

    shown = run(parley, "leads", "show", lead["id"], "--json")
    assert shown.exit_code == 0, shown.output
    assert sorted(n["channel"] for n in json.loads(shown.stdout)["notifications"]) == ["email", "sms"]

    listed = run(parley, "leads", "list")
    assert listed.exit_code == 0 and "Ada" in listed.stdout
    misspelt = run(parley, "leads", "list", "--status", "machted")
    assert misspelt.exit_code == 2 and "unmatched" in misspelt.output, "not an empty table"
    assert run(parley, "businesses", "deactivate", business["id"]).exit_code == 0
    active = json.loads(run(parley, "businesses", "list", "--json").stdout)["data"]
    every = json.loads(run(parley, "businesses", "list", "--all", "--json").stdout)["data"]
    assert active == [] and [b["id"] for b in every] == [business["id"]]
    assert run(parley, "leads", "show", "lead_missing").exit_code == 1


def test_leads_show_says_why_a_notice_is_still_pending(parley: typer.Typer) -> None:
    """An operator whose SMTP server is down sees the reason in the table, not only in --json."""
    from datetime import UTC, datetime, timedelta

    from parley.commands.leads import _run
    from parley.platform.runtime import Platform
    from parley.store.notifications import NotificationRepository

    added = ["businesses", "add", "Hudson", "--category", "plumbing", "--email", "desk@hudson.example.com",
             "--phone", "+12125550100", "--time-zone", "UTC", "--postal-code", "11216"]  # fmt: skip
    assert run(parley, *added).exit_code == 0
    submitted = ["leads", "submit", "--name", "Ada", "--phone", "+12015550123", "--category", "plumbing",
                 "--postal-code", "11216", "--json"]  # fmt: skip
    lead_id = json.loads(run(parley, *submitted).stdout)["id"]

    async def smtp_down(platform: Platform, org: str) -> None:
        email = next(n for n in await platform.leads.notifications(org, lead_id) if n.channel == "email")
        now = datetime.now(UTC)
        async with platform.db.session() as session:
            notices = NotificationRepository(session)
            assert await notices.claim(email.id, now, now + timedelta(minutes=1))
            assert await notices.not_sent(email.id, 1, "SMTP connection refused", now + timedelta(minutes=5))

    _run(smtp_down)
    shown = CliRunner().invoke(parley, ["leads", "show", lead_id], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and "SMTP connection refused" in shown.stdout
