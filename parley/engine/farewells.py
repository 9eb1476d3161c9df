"""Both sides said goodbye, and the model did not hang up.

A small model answers "Cool, thank you, that's all I needed." with "You're welcome! Have a nice day!"
and no call of the closing tool: the caller hears a goodbye and then an open line. When the caller's
message closes the call and the agent's whole reply is a farewell, the engine makes the closing call
itself (``engine/thinking.py``), as the agent would have been told to.
"""

from __future__ import annotations

import re

from parley.engine.grounding import is_question

_CLOSING = re.compile(
    r"\b(?:(?:good)?-?\s?bye|see you|talk (?:to you )?(?:later|soon)|take care"
    r"|that(?:'s| is| will be|'ll be) (?:all|it|everything)|(?:all|nothing else) (?:i|for me)"
    r"|(?:i'm|i am|we're|we are) all set|nothing else|no more questions"
    r"|have a (?:good|nice|great|lovely|wonderful) (?:day|one|evening|night|weekend))\b",
    re.IGNORECASE,
)
"""A caller closing the call ("Bye now", "That's all I needed", "I'm all set, thanks")."""

_FAREWELL = re.compile(
    r"^(?:(?:you(?:'re| are) (?:very |most )?welcome|(?:good)?-?\s?bye(?: now| for now)?|take care"
    r"|thank you|thanks|my pleasure|glad (?:i|we) could help|it was (?:a pleasure|nice) talking to you"
    r"|(?:thank you|thanks) for (?:calling|your call|reaching out)(?: \w+){0,4}"
    r"|(?:have|enjoy) (?:a|the|your) (?:(?:very|really) )?(?:good|nice|great|lovely|wonderful|safe)"
    r" (?:day|one|evening|night|weekend|rest of your day)|you too)[\s,.!]*)+$",
    re.IGNORECASE,
)
"""A reply that is nothing but a farewell: no question, no answer, no offer of more help."""


def closes_call(caller: str) -> bool:
    """The caller's message closes the call (a question never does: "Is that all I need to bring?")."""
    return not is_question(caller) and _CLOSING.search(caller) is not None


def is_farewell(reply: str) -> bool:
    return bool(reply.strip()) and _FAREWELL.match(reply.strip()) is not None
