"""Numbers Parley will not dial or text, whoever asks: one rule for every way a number gets in.

A premium-rate number (a US/Canadian 900 number, a UK 09…) bills the caller per minute and pays part of
it to whoever holds the number: anyone who can make Parley call or text one (a lead typed into the public
form, a queued call, a business's text number) can turn the operator's Twilio account into their income.
Such a number is valid, so the E.164 checks pass it; ``phonenumbers`` tells it by its type.

The rule is applied where a number becomes a destination (a callee, a transfer target, a text's
recipient: ``check_callee``, ``refuse_premium_rate``, ``parley.inputs.dialable``), not to every phone
number: a number the organization owns (``/v1/phone-numbers``) may be premium-rate, since an inbound
premium-rate line is what such numbers are for and Parley only ever answers it and shows it as caller id;
it is never dialed, as no call to one of the organization's own numbers is.

A call to one of the organization's own numbers rings back into ``/twilio/voice``: two agents talk to
each other, billed both ways. Whether a number is the organization's needs the store, so the caller looks
that up and this module only words the refusal, the same for the outbound queue and a room's dial-out.
"""

from __future__ import annotations

from typing import Literal

import phonenumbers

Refusal = Literal["premium_rate", "own_number"]

PREMIUM_RATE = "a premium-rate number, which is never called or texted"
OWN_NUMBER = "one of the organization's own numbers"


class RefusedNumber(ValueError):
    """A well-formed number Parley refuses to call or text. ``field`` names the input that held it and
    ``reason`` says which rule refused it, so an API can answer 422 pointing at the field."""

    def __init__(self, field: str, reason: Refusal, detail: str) -> None:
        super().__init__(f"{field} is {detail}")
        self.field = field
        self.reason: Refusal = reason
        self.detail = detail
        """The refusal without the field's name (for errors that carry it apart, as pydantic's ``loc``)."""


def is_premium_rate(number: phonenumbers.PhoneNumber | str) -> bool:
    """Whether ``number`` (parsed, or E.164) is in a premium-rate range. A string that does not parse is
    not premium-rate: whether it is a number at all is the E.164 check's to say."""
    if isinstance(number, str):
        try:
            number = phonenumbers.parse(number, None)
        except phonenumbers.NumberParseException:
            return False
    return phonenumbers.number_type(number) == phonenumbers.PhoneNumberType.PREMIUM_RATE


def refuse_premium_rate(number: phonenumbers.PhoneNumber | str, field: str) -> None:
    """Raise ``RefusedNumber`` when ``number`` is premium-rate (lead and business phones, callees)."""
    if is_premium_rate(number):
        raise RefusedNumber(field, "premium_rate", PREMIUM_RATE)


def check_callee(to: phonenumbers.PhoneNumber | str, *, own: bool, field: str = "to") -> None:
    """Raise ``RefusedNumber`` unless Parley may dial ``to``: not premium-rate, and not one of the
    organization's own numbers (``own``, which the caller looked up: a call there would loop back)."""
    refuse_premium_rate(to, field)
    if own:
        raise RefusedNumber(field, "own_number", OWN_NUMBER)
