"""The scripted calls of ``parley bench quality``: small businesses, their facts and tools, and what a
caller asks them.

Each turn names what a right answer does, not its words: it states a fact (some words must appear, some
must not), admits not knowing (and offers a message or a call-back), calls a tool with the right
arguments, or ends the call. The businesses, facts and questions were written for this bench alone; the
held-out calls Parley is judged on are other businesses and other phrasings, so nothing here is tuned
to one wording.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Expect = Literal["fact", "unknown", "tool", "end"]

GROUNDED = (
    "Answer questions about the business only from the facts you were given. If they do not answer a "
    "question, say you don't know and offer to take a message."
)


@dataclass(frozen=True, slots=True)
class QualityTurn:
    says: str
    expect: Expect
    any_of: tuple[str, ...] = ()
    """For ``fact``: the reply must contain one of these (case-insensitive)."""
    none_of: tuple[str, ...] = ()
    """For ``fact``: the reply must contain none of these (a wrong yes, a made-up figure)."""
    tool: str = ""
    """For ``tool``: the tool that must be called."""
    arguments: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """For ``tool``: per argument, the value must contain one of these (case-insensitive)."""


@dataclass(frozen=True, slots=True)
class QualityAgent:
    name: str
    role: str
    facts: tuple[str, ...]
    tools: tuple[dict[str, Any], ...]
    turns: tuple[QualityTurn, ...]

    def config(self) -> dict[str, Any]:
        """The agent as YAML would give it (validated by ``AgentConfig`` in the bench)."""
        return {
            "name": self.name,
            "system_prompt": f"{self.role} {GROUNDED}",
            "knowledge": list(self.facts),
            "tools": [
                *self.tools,
                {
                    "name": "end_call",
                    "description": "End the call when the caller says goodbye or has nothing else.",
                    "side_effect": True,
                },
            ],
        }


def _tool(name: str, description: str, properties: dict[str, str], required: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "description": description,
        "kind": "static",
        "result": {"ok": True, "confirmation": "done"},
        "side_effect": True,
        "parameters": {
            "type": "object",
            "properties": {key: {"type": "string", "description": text} for key, text in properties.items()},
            "required": required,
        },
    }


GOODBYE = QualityTurn("Great, that's all I needed. Thanks, goodbye!", "end")

CASES: tuple[QualityAgent, ...] = (
    QualityAgent(
        name="harbor-dental",
        role="You are the receptionist at Harbor Dental, answering the phone.",
        facts=(
            "Harbor Dental is open Monday to Thursday from 8 am to 6 pm, and Friday from 8 am to noon.",
            "Harbor Dental is closed on Saturday and Sunday.",
            "A check-up with cleaning costs 120 dollars.",
            "The dentists are Dr. Irene Walsh and Dr. Omar Haddad.",
            "Parking is free in the lot behind the building.",
        ),
        tools=(
            _tool(
                "book_appointment",
                "Book a dental appointment for the caller.",
                {"day": "day of the appointment", "time": "time of day", "name": "caller's name"},
                ["day", "time", "name"],
            ),
        ),
        turns=(
            QualityTurn(
                "Are you open on Saturday mornings?", "fact", ("closed", "not open", "no"), ("yes, we",)
            ),
            QualityTurn("How much does a check-up with cleaning cost?", "fact", ("120", "hundred twenty")),
            QualityTurn("Do you take Blue Shield insurance?", "unknown"),
            QualityTurn(
                "I'd like to book an appointment on Tuesday at 3 pm. My name is Dana Lee.",
                "tool",
                tool="book_appointment",
                arguments={"day": ("tue",), "time": ("3",), "name": ("dana",)},
            ),
            GOODBYE,
        ),
    ),
    QualityAgent(
        name="quickfix-plumbing",
        role="You are the call-back assistant for QuickFix Plumbing, calling back people who asked for help.",
        facts=(
            "QuickFix Plumbing has three licensed plumbers on call.",
            "A standard service visit costs 95 dollars, plus parts.",
            "Emergency visits are available 24 hours a day, 7 days a week, for 180 dollars.",
            "QuickFix serves Springfield and Shelbyville only.",
        ),
        tools=(
            _tool(
                "schedule_visit",
                "Schedule a plumber's visit at the caller's address.",
                {"address": "street address", "problem": "what is wrong"},
                ["address", "problem"],
            ),
        ),
        turns=(
            QualityTurn(
                "Do you actually have a plumber who can come out?", "fact", ("plumber",), ("don't have",)
            ),
            QualityTurn("How much is an emergency visit at night?", "fact", ("180", "hundred eighty")),
            QualityTurn(
                "Do you also come out to Capital City?", "fact", ("springfield", "shelbyville", "only", "no")
            ),
            QualityTurn("Do you install solar panels?", "unknown"),
            QualityTurn(
                "Please send someone to 42 Maple Street, my kitchen sink is leaking.",
                "tool",
                tool="schedule_visit",
                arguments={"address": ("42 maple",), "problem": ("sink", "leak")},
            ),
        ),
    ),
    QualityAgent(
        name="olive-tree-bistro",
        role="You take phone calls for the Olive Tree Bistro, a small restaurant.",
        facts=(
            "The Olive Tree Bistro serves dinner from 5 pm to 10 pm, Tuesday to Sunday.",
            "The bistro is closed on Mondays.",
            "Every main course has a vegetarian version.",
            "Tables are for at most eight people.",
        ),
        tools=(
            _tool(
                "reserve_table",
                "Reserve a table at the bistro.",
                {"date": "day of the reservation", "time": "time", "party_size": "number of people"},
                ["date", "time", "party_size"],
            ),
        ),
        turns=(
            QualityTurn(
                "Can I come for dinner on Monday?", "fact", ("closed", "not open", "no"), ("yes, you can",)
            ),
            QualityTurn("Do you have vegetarian dishes?", "fact", ("vegetarian", "yes")),
            QualityTurn("Is there live music on weekends?", "unknown"),
            QualityTurn(
                "Please reserve a table for four on Friday at 7 pm.",
                "tool",
                tool="reserve_table",
                arguments={"date": ("fri",), "time": ("7",), "party_size": ("4", "four")},
            ),
            GOODBYE,
        ),
    ),
    QualityAgent(
        name="shear-studio",
        role="You are the front desk of Shear Studio, a hair salon.",
        facts=(
            "A women's haircut costs 55 dollars and a men's haircut costs 30 dollars.",
            "Shear Studio is open Tuesday to Saturday, 10 am to 7 pm.",
            "Shear Studio does not do hair coloring.",
        ),
        tools=(
            _tool(
                "book_haircut",
                "Book a haircut appointment.",
                {"day": "day", "time": "time", "name": "customer's name"},
                ["day", "time", "name"],
            ),
        ),
        turns=(
            QualityTurn("How much is a men's haircut?", "fact", ("30", "thirty")),
            QualityTurn(
                "Can you color my hair blonde?",
                "fact",
                ("not", "don't", "can't", "cannot", "no"),
                ("yes, we",),
            ),
            QualityTurn("Do you sell gift cards?", "unknown"),
            QualityTurn(
                "Book me a haircut on Thursday at 11 am, the name is Priya.",
                "tool",
                tool="book_haircut",
                arguments={"day": ("thu",), "time": ("11",), "name": ("priya",)},
            ),
        ),
    ),
    QualityAgent(
        name="ridgeway-auto",
        role="You answer the phone for Ridgeway Auto Repair.",
        facts=(
            "An oil change costs 49 dollars and takes about 30 minutes.",
            "Ridgeway Auto repairs cars and light trucks, but not motorcycles.",
            "The shop is at 310 Ridgeway Road.",
        ),
        tools=(
            _tool(
                "request_quote",
                "Ask a mechanic to call the customer back with a repair quote.",
                {"vehicle": "make and model", "issue": "what is wrong", "phone": "phone number"},
                ["vehicle", "issue"],
            ),
        ),
        turns=(
            QualityTurn("Where is your shop?", "fact", ("310", "ridgeway road")),
            QualityTurn(
                "Can you fix my motorcycle?", "fact", ("not", "don't", "can't", "cannot", "no"), ("yes, we",)
            ),
            QualityTurn("How long does an oil change take?", "fact", ("30", "thirty", "half an hour")),
            QualityTurn("Are you hiring mechanics right now?", "unknown"),
            QualityTurn(
                "My Honda Civic makes a grinding noise when I brake. Can a mechanic call me with a quote?",
                "tool",
                tool="request_quote",
                arguments={"vehicle": ("civic", "honda"), "issue": ("grind", "brake", "noise")},
            ),
        ),
    ),
    QualityAgent(
        name="maple-vet",
        role="You are the receptionist at Maple Veterinary Clinic.",
        facts=(
            "Maple Veterinary Clinic treats dogs, cats and rabbits.",
            "The clinic is open every day from 9 am to 5 pm.",
            "A vaccination visit costs 65 dollars.",
        ),
        tools=(
            _tool(
                "book_visit",
                "Book a visit for a pet.",
                {"pet": "the kind of pet and its name", "day": "day", "reason": "why the pet is coming"},
                ["pet", "day"],
            ),
        ),
        turns=(
            QualityTurn("Are you open on Sunday?", "fact", ("yes", "every day", "open")),
            QualityTurn("Do you treat parrots?", "fact", ("dogs", "cats", "rabbits", "not", "don't")),
            QualityTurn("Is Dr. Brooks working this week?", "unknown"),
            QualityTurn(
                "I need to bring my cat Luna in on Wednesday for her vaccinations.",
                "tool",
                tool="book_visit",
                arguments={"pet": ("luna", "cat"), "day": ("wed",)},
            ),
            GOODBYE,
        ),
    ),
    QualityAgent(
        name="lotus-yoga",
        role="You answer calls for Lotus Yoga Studio.",
        facts=(
            "A drop-in class costs 20 dollars; a monthly pass costs 110 dollars.",
            "Beginner classes are on Monday and Wednesday evenings at 6 pm.",
            "Mats are provided free of charge.",
        ),
        tools=(
            _tool(
                "sign_up",
                "Sign the caller up for a class.",
                {"class_day": "day of the class", "name": "caller's name"},
                ["class_day", "name"],
            ),
        ),
        turns=(
            QualityTurn("Do I need to bring my own mat?", "fact", ("provide", "free", "no")),
            QualityTurn("How much is a monthly pass?", "fact", ("110", "hundred ten", "hundred and ten")),
            QualityTurn("Do you offer hot yoga?", "unknown"),
            QualityTurn(
                "Sign me up for the Wednesday beginner class, my name is Marco.",
                "tool",
                tool="sign_up",
                arguments={"class_day": ("wed",), "name": ("marco",)},
            ),
        ),
    ),
    QualityAgent(
        name="seaside-inn",
        role="You are the front desk of the Seaside Inn, a small hotel.",
        facts=(
            "Check-in is from 3 pm and check-out is by 11 am.",
            "Breakfast is included with every room.",
            "Pets are not allowed at the Seaside Inn.",
            "A double room costs 140 dollars a night.",
        ),
        tools=(
            _tool(
                "book_room",
                "Book a room at the inn.",
                {"check_in": "arrival date", "nights": "number of nights", "guest": "guest's name"},
                ["check_in", "nights"],
            ),
        ),
        turns=(
            QualityTurn("Can I bring my dog?", "fact", ("not", "no pets", "no"), ("yes",)),
            QualityTurn("What time is check-out?", "fact", ("11", "eleven")),
            QualityTurn("Is breakfast extra?", "fact", ("included",), ("extra charge",)),
            QualityTurn("Is there a pool?", "unknown"),
            QualityTurn(
                "I'd like a room from June 3rd for two nights, under the name Kim.",
                "tool",
                tool="book_room",
                arguments={"check_in": ("june", "3"), "nights": ("2", "two"), "guest": ("kim",)},
            ),
            GOODBYE,
        ),
    ),
)
