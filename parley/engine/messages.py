"""Messages a call's tools may send (the built-ins ``send_sms`` and ``send_email``), as the engine sees them.

The engine knows no SQL and no channel: a ``CallMessages`` is handed to it in the call's ``CallContext``
(``parley/platform/messages.py`` puts each message in the notification outbox). A call with none, a
simulation, a call off the books, answers ``MessagesUnavailable`` in words a model can repeat.

Who may receive is the agent's configuration, never the model's choice: ``ToolSettings.recipients`` names
addresses (validated here, when the agent is saved), and the model picks a name.
"""

from __future__ import annotations

from typing import Annotated, Protocol

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

from parley.engine.transport import ControlUnavailable
from parley.inputs import dialable, refuse_nul

SMS_MAX_CHARS = 480
"""What one ``send_sms`` may say: three or four SMS segments, about what a caller reads at a glance."""
EMAIL_BODY_MAX_CHARS = 4000
EMAIL_SUBJECT_MAX_CHARS = 120
DEFAULT_MAX_PER_CALL = 3
MAX_PER_CALL = 10
"""A message costs money and reaches a person: a call sends a handful at most, whatever it is told."""
CALLER = "caller"
"""The recipient name meaning the person on this call (their number; for email, ``metadata.email``)."""
MESSAGE_TOOLS = frozenset({"send_sms", "send_email"})


class MessagesUnavailable(ControlUnavailable):
    """This call cannot send that kind of message (no channel configured, no number to send from, not on
    the books). The text is a sentence the model can say."""


class CallMessages(Protocol):
    """Queue a message on behalf of the call; returns an id once it is durably queued (not yet sent)."""

    async def send_sms(self, to: str, body: str) -> str: ...

    async def send_email(self, to: str, subject: str, body: str) -> str: ...


class NoMessages:
    """What a call with no message channels can do: nothing, said plainly."""

    async def send_sms(self, to: str, body: str) -> str:
        raise MessagesUnavailable("I can't send text messages on this call")

    async def send_email(self, to: str, subject: str, body: str) -> str:
        raise MessagesUnavailable("I can't send emails on this call")


def email_address(value: str) -> str:
    """An email address as it will be sent to (normalized), or a validation error saying why not."""
    from email_validator import EmailNotValidError, validate_email

    if len(value) > 320:
        raise PydanticCustomError("email", "an email address is at most 320 characters")
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise PydanticCustomError("email", "not an email address: {why}", {"why": str(exc)}) from None


def recipient(value: str) -> str:
    """A configured recipient: a phone number (E.164, for texts) or an email address."""
    return email_address(value) if "@" in value else dialable(value)


Recipient = Annotated[str, AfterValidator(refuse_nul), AfterValidator(recipient)]


def recipients_problem(tool: str, recipients: dict[str, str], to_caller: bool) -> str | None:
    """Why a message tool's recipients cannot work (None when they can): each must suit the tool's
    channel, ``caller`` is reserved, and there must be someone to send to."""
    for name, address in recipients.items():
        if name.strip().casefold() == CALLER:
            return f"recipients.{name}: '{CALLER}' is reserved for the person on the call (see to_caller)"
        is_email = "@" in address
        if tool == "send_sms" and is_email:
            return f"recipients.{name}: send_sms texts phone numbers (E.164), not an email address"
        if tool == "send_email" and not is_email:
            return f"recipients.{name}: send_email needs an email address, not a phone number"
    if not recipients and not to_caller:
        return f"{tool} needs at least one entry in recipients, or to_caller"
    return None
