"""The scripted sales calls of ``parley bench coach``: who says what, and which coaching trigger (if any)
each line should fire.

Written for the benchmark, not for the phrase lists: the triggers are said the way customers say them,
and the lines that must stay quiet come close ("the price is fine", "we are not cancelling").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Line:
    role: str
    """``customer`` or ``rep``: whose leg speaks it."""
    text: str
    expect: str | None = None
    """The trigger this line should fire, or None for a line that should fire nothing."""


@dataclass(frozen=True, slots=True)
class SalesCall:
    name: str
    competitors: tuple[str, ...]
    lines: tuple[Line, ...]


CALLS: tuple[SalesCall, ...] = (
    SalesCall(
        "crm_renewal",
        ("Salesforce", "HubSpot"),
        (
            Line(
                "rep",
                "Hi, this is Dana from Brightline. Do you have a few minutes to talk about your renewal?",
            ),
            Line("customer", "Sure, I have about ten minutes before my next meeting."),
            Line("rep", "Great. Last year your team used the reporting module the most."),
            Line("customer", "How much would the renewal cost us this year?", "pricing_question"),
            Line("rep", "For twenty seats it comes to about eleven thousand a year."),
            Line("customer", "Honestly, that's way too expensive for a team our size.", "price_objection"),
            Line("customer", "HubSpot quoted us a lot less last month.", "competitor_mention"),
            Line("rep", "I understand. Let me walk you through what changed in the new version."),
            Line("customer", "The new dashboards look really useful for my managers."),
            Line(
                "customer",
                "To be honest, we were thinking about cancelling our subscription.",
                "cancellation_intent",
            ),
            Line("rep", "I'm sorry to hear that. What would make it worth keeping?"),
            Line("customer", "We mostly use it for the weekly sales reports."),
        ),
    ),
    SalesCall(
        "solar_quote",
        ("SunPower", "Tesla"),
        (
            Line("rep", "Thanks for calling Northstar Solar, this is Sam. How can I help today?"),
            Line(
                "customer",
                "I'd like to know what a system for a three bedroom house would run me.",
                "pricing_question",
            ),
            Line(
                "rep",
                "Most homes that size need about six kilowatts, which is around fourteen thousand dollars.",
            ),
            Line("customer", "Hmm, we really can't afford that right now.", "price_objection"),
            Line("rep", "We do offer financing with no money down."),
            Line("customer", "The installation timeline you described works well for us."),
            Line(
                "customer", "My neighbor went with SunPower and he's happy with them.", "competitor_mention"
            ),
            Line("rep", "They make good panels. Our warranty covers labor for twenty five years."),
            Line("customer", "Okay, that sounds good, I think we're interested.", "next_step_missing"),
            Line("rep", "Great, it was nice talking to you."),
            Line("rep", "Enjoy the rest of your week."),
            Line("customer", "The price seems fair now that I hear about the warranty."),
            Line(
                "customer",
                "I'm really frustrated that nobody called me back last week.",
                "negative_sentiment",
            ),
        ),
    ),
    SalesCall(
        "fleet_insurance",
        ("Geico", "Progressive"),
        (
            Line("rep", "Hi, this is Morgan from Harbor Insurance, I'm calling about your fleet policy."),
            Line("customer", "Right, we have twelve vans on the road now."),
            Line("customer", "What are you charging per vehicle these days?", "pricing_question"),
            Line("rep", "It would be about ninety dollars a month per van with full coverage."),
            Line("customer", "That's a lot more than we budgeted for this year.", "price_objection"),
            Line("customer", "Geico offered us something similar for less.", "competitor_mention"),
            Line("rep", "Our claims are handled within forty eight hours, which keeps your vans working."),
            Line(
                "customer",
                "Frankly, I'm angry about how badly your team handled our last claim.",
                "negative_sentiment",
            ),
            Line(
                "customer", "If this doesn't improve, we'll have to end the contract.", "cancellation_intent"
            ),
            Line("rep", "I understand, and I want to keep your business."),
            Line("customer", "The coverage itself has been fine, no complaints there."),
            Line("customer", "Alright, let's go ahead with the renewal then.", "next_step_missing"),
            Line("rep", "Wonderful, thank you for your time."),
            Line("rep", "Talk to you soon."),
        ),
    ),
)


def all_lines() -> list[tuple[str, Line]]:
    return [(call.name, line) for call in CALLS for line in call.lines]
