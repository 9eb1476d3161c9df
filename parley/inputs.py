"""Types for values that come from outside (the REST API, agent YAML), refused early with the field named.

A NUL character is refused in every string: PostgreSQL cannot store one in text or JSONB, so it would
otherwise fail only at the database, as a server error (no name, prompt or id needs one). ``SafeStr``
text also refuses the other control characters but tab, line feed and carriage return (what typed text
holds; an HTML form sends line breaks as CRLF): an escape sequence stored in a name, a description or
a prompt reaches every terminal and log viewer that shows it, and no honest text holds one. A name
(``PlainName``) is one line: no control character at all, nor a Unicode line separator. JSON has no
NaN or Infinity, yet Python's parser accepts both and reads ``1e400`` as Infinity: a stored one could
not be served back as JSON. Datetimes are made aware and moved to UTC here, where a value at the edge of
the calendar (year 1 east of UTC, year 9999 west of it) fails as a validation error, not later.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

MAX_INT32 = 2**31 - 1
"""Versions and event sequence numbers are 32-bit columns."""

MAX_JSON_DEPTH = 32
"""Nesting allowed in free-form JSON (tool parameters and results): a JSON schema needs a few levels."""


def refuse_nul(value: str) -> str:
    if "\x00" in value:
        raise PydanticCustomError("nul_character", "NUL characters (\\u0000) are not allowed")
    return value


NoNul = AfterValidator(refuse_nul)

_TEXT_CONTROLS = re.compile(r"[\x01-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_NAME_BREAKERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _code_point(char: str) -> str:
    return f"U+{ord(char):04X}"


def refuse_controls(value: str) -> str:
    """``refuse_nul``, and the control characters text has no use for (ESC, BEL, backspace, C1 …),
    which would drive the terminal of whoever is shown the text. Tab, LF and CR stay."""
    refuse_nul(value)
    if (found := _TEXT_CONTROLS.search(value)) is not None:
        raise PydanticCustomError(
            "control_character",
            "control characters ({char}) are not allowed; tab and line breaks are",
            {"char": _code_point(found.group())},
        )
    return value


def plain_name(value: str) -> str:
    """A name on one line, as document names are: no control character (tab and line breaks included)
    and no Unicode line separator, so it cannot pass for something else in a listing or a log line."""
    refuse_nul(value)
    if (found := _NAME_BREAKERS.search(value)) is not None:
        raise PydanticCustomError(
            "control_character",
            "a name cannot hold control characters or line breaks ({char})",
            {"char": _code_point(found.group())},
        )
    return value


SafeStr = Annotated[str, AfterValidator(refuse_controls)]
"""Text without NUL or other control characters but tab, LF and CR; add ``Field(max_length=...)``."""
PlainName = Annotated[str, AfterValidator(plain_name)]
"""A name or label shown on one line: no control character at all; add ``Field(...)`` for lengths."""


def plain_json(value: Any) -> Any:
    """Free-form JSON that every database and client can hold: no NUL in keys or strings, only finite
    numbers, at most ``MAX_JSON_DEPTH`` levels deep. The error names where inside the value it failed."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, where, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise PydanticCustomError(
                "json_too_deep",
                "nested deeper than {limit} levels at {where}",
                {"limit": MAX_JSON_DEPTH, "where": where or "the top"},
            )
        if isinstance(item, str):
            if "\x00" in item:
                raise PydanticCustomError(
                    "nul_character",
                    "NUL characters (\\u0000) are not allowed (at {where})",
                    {"where": where or "the top"},
                )
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise PydanticCustomError(
                    "finite_number", "numbers must be finite (at {where})", {"where": where or "the top"}
                )
        elif isinstance(item, dict):
            for key, child in item.items():
                path = f"{where}.{key}" if where else str(key)
                stack.append((key, path, depth + 1))
                stack.append((child, path, depth + 1))
        elif isinstance(item, list | tuple):
            stack.extend((child, f"{where}[{i}]", depth + 1) for i, child in enumerate(item))
    return value


PlainJson = Annotated[Any, AfterValidator(plain_json)]
JsonObject = Annotated[dict[str, Any], AfterValidator(plain_json)]


def to_utc(value: datetime) -> datetime:
    """Aware and in UTC (a naive value is taken as UTC), or a validation error when UTC has no such time."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError(
            "datetime_range",
            "{value} is outside the supported range of dates in UTC",
            {"value": value.isoformat()},
        ) from None


UtcDatetime = Annotated[datetime, AfterValidator(to_utc)]


def e164(value: str) -> str:
    """A phone number that exists in the numbering plan, written in E.164 (``+14155550100``): the one
    spelling phone numbers are stored and compared in, so ``+1 (415) 555-0100`` finds the same row."""
    import phonenumbers  # its metadata loads on first use; most processes never parse a number

    if not value.startswith("+") or len(value) > 32:
        raise PydanticCustomError("e164", "a phone number in E.164 form starts with + and a country code")
    try:
        parsed = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        raise PydanticCustomError("e164", "not a phone number") from None
    if not phonenumbers.is_valid_number(parsed):
        raise PydanticCustomError("e164", "not a valid phone number for its country")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


E164 = Annotated[str, AfterValidator(refuse_nul), AfterValidator(e164)]
"""A phone number, normalized to E.164: well-formed, not a permission to call it. A number Parley dials
or texts must also pass ``dialable`` (or ``telephony.number_rules.check_callee``); a number it only
answers or shows as caller id (the organization's own) may be any number, premium-rate included."""


def dialable(value: str) -> str:
    """``e164``, and not premium-rate: a number an agent's configuration makes Parley call or text (a
    transfer destination, a message recipient). Such a number bills per minute and pays its holder."""
    from parley.telephony.number_rules import PREMIUM_RATE, is_premium_rate

    number = e164(value)
    if is_premium_rate(number):
        raise PydanticCustomError("premium_rate", PREMIUM_RATE)
    return number


_SIP_URI = re.compile(r"^sips?:[A-Za-z0-9._~+%!$&'()*,;=-]+@[A-Za-z0-9.-]+(:\d{1,5})?(;[A-Za-z0-9=._-]+)*$")


def call_target(value: str) -> str:
    """Where a call may be sent on: a phone number (E.164) or a SIP URI (``sip:desk@pbx.example.com``)."""
    if value.startswith(("sip:", "sips:")):
        if len(value) > 255 or not _SIP_URI.match(value):
            raise PydanticCustomError("sip_uri", "not a SIP URI of the form sip:user@host")
        return value
    return dialable(value)


CallTarget = Annotated[str, AfterValidator(refuse_nul), AfterValidator(call_target)]
