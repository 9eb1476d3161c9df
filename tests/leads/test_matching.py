"""Which businesses a lead goes to: service area (radius or postal code) and opening hours in each
business's own time zone, including ranges past midnight; and the values a lead or business may hold."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from parley.platform.leads import BusinessIn, LeadIn, distance_km, is_open, match
from parley.store.models import Business
from tests.leads.conftest import NEW_YORK, TUESDAY_NOON_NEW_YORK, business_body, lead_body

WEEKDAYS_9_TO_5 = {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}


def _business(ident: str, **changes: Any) -> Business:
    fields = business_body(**changes)
    return Business(
        id=ident,
        org_id="org_1",
        name=fields["name"],
        category=fields["category"],
        latitude=fields.get("latitude"),
        longitude=fields.get("longitude"),
        radius_km=fields.get("radius_km"),
        postal_codes=fields.get("postal_codes", []),
        hours=fields["hours"],
        time_zone=fields["time_zone"],
        notify_email=fields["notify_email"],
        notify_phone=fields["notify_phone"],
        active=True,
    )


def test_hours_are_read_in_the_business_time_zone() -> None:
    # 17:00 UTC on a Tuesday in December is noon in New York and 09:00 in Los Angeles.
    assert is_open(WEEKDAYS_9_TO_5, "America/New_York", TUESDAY_NOON_NEW_YORK)
    assert is_open(WEEKDAYS_9_TO_5, "America/Los_Angeles", TUESDAY_NOON_NEW_YORK)
    assert not is_open(WEEKDAYS_9_TO_5, "America/Los_Angeles", datetime(2026, 12, 8, 16, 59, tzinfo=UTC))
    assert not is_open(WEEKDAYS_9_TO_5, "Europe/London", TUESDAY_NOON_NEW_YORK), "17:00 in London: closed"
    assert not is_open(WEEKDAYS_9_TO_5, "America/New_York", datetime(2026, 12, 12, 17, tzinfo=UTC)), "Sat"


def test_a_range_that_ends_before_it_starts_runs_past_midnight() -> None:
    friday_night = {"fri": [["22:00", "02:00"]]}
    zone = "Europe/Berlin"  # UTC+1 in December: 2026-12-11 is a Friday

    def at(day: int, hour: int, minute: int = 0) -> datetime:
        return datetime(2026, 12, day, hour - 1, minute, tzinfo=UTC)  # local time given

    assert is_open(friday_night, zone, at(11, 23))
    assert is_open(friday_night, zone, at(12, 1, 59)), "Saturday 01:59 belongs to Friday's night"
    assert not is_open(friday_night, zone, at(12, 2))
    assert not is_open(friday_night, zone, at(11, 21, 59))
    assert not is_open(friday_night, zone, at(10, 23)), "Thursday has no hours"
    assert is_open({"sun": [["00:00", "24:00"]]}, zone, at(13, 23, 59))
    assert is_open({}, zone, at(13, 3)), "no hours at all: always open"


def test_distance_is_great_circle() -> None:
    assert distance_km(51.5074, -0.1278, 48.8566, 2.3522) == pytest.approx(343.5, abs=1.0)  # London-Paris
    assert distance_km(*NEW_YORK, *NEW_YORK) == 0.0


def test_a_lead_goes_to_open_businesses_whose_area_holds_it() -> None:
    near = _business("biz_near")
    far = _business("biz_far", latitude=41.8781, longitude=-87.6298)  # Chicago, 25 km radius
    by_code = _business("biz_code", latitude=None, longitude=None, radius_km=None, postal_codes=["11216"])
    closed = _business("biz_closed", hours={"sat": [["09:00", "12:00"]]})
    lead = LeadIn.model_validate(lead_body(postal_code="11216"))

    chosen = match(lead, [far, closed, by_code, near], TUESDAY_NOON_NEW_YORK)

    assert [m.business.id for m in chosen] == ["biz_near", "biz_code"], "nearest first, postal code last"
    assert chosen[0].distance_km == pytest.approx(6.5, abs=0.1)
    assert chosen[1].distance_km is None and all(m.open for m in chosen)


def test_when_every_business_in_the_area_is_closed_all_of_them_are_told() -> None:
    a = _business("biz_a", hours={"sat": [["09:00", "12:00"]]})
    b = _business("biz_b", hours={"sun": [["09:00", "12:00"]]})
    chosen = match(LeadIn.model_validate(lead_body()), [a, b], TUESDAY_NOON_NEW_YORK)
    assert {m.business.id for m in chosen} == {"biz_a", "biz_b"}
    assert not any(m.open for m in chosen)


def test_a_lead_outside_every_area_matches_nothing() -> None:
    lead = LeadIn.model_validate(lead_body(latitude=None, longitude=None, postal_code="10001"))
    assert match(lead, [_business("biz_near")], TUESDAY_NOON_NEW_YORK) == []


def test_categories_and_postal_codes_have_one_spelling() -> None:
    lead = LeadIn.model_validate(lead_body(category="  HVAC_Repair ", postal_code="sw1a 1aa"))
    assert lead.category == "hvac-repair" and lead.postal_code == "SW1A1AA"
    business = BusinessIn.model_validate(business_body(postal_codes=["sw1a 1aa", "SW1A1AA"]))
    assert business.postal_codes == ["SW1A1AA"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"hours": {"mon": [["9am", "5pm"]]}}, "hours"),
        ({"hours": {"mon": [["09:00", "09:00"]]}}, "hours"),
        ({"hours": {"someday": [["09:00", "17:00"]]}}, "hours"),
        ({"time_zone": "America"}, "time_zone"),
        ({"time_zone": "../../etc/passwd"}, "time_zone"),
        ({"category": "plumbing/../x"}, "category"),
        ({"notify_email": "not-an-address"}, "notify_email"),
        ({"radius_km": -1}, "radius_km"),
    ],
)
def test_a_business_refuses_bad_values_naming_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        BusinessIn.model_validate(business_body(**changes))
    assert caught.value.errors()[0]["loc"][0] == field


def test_a_business_needs_a_service_area() -> None:
    with pytest.raises(ValidationError, match="service area"):
        BusinessIn.model_validate(business_body(latitude=None, longitude=None, radius_km=None))
    with pytest.raises(ValidationError, match="latitude and longitude"):
        LeadIn.model_validate(lead_body(longitude=None))
