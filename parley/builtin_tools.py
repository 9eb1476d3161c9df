"""The built-in tools (``tools: [{kind: builtin, name: …}]``): ordinary tools that act on the call only
through their result (``ToolResult(end_call=True)``) or their ``CallContext`` (the line's controls, the
call's messages). No part of the engine knows their names."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from parley.engine.agent import ToolSettings
from parley.engine.messages import (
    CALLER,
    EMAIL_BODY_MAX_CHARS,
    EMAIL_SUBJECT_MAX_CHARS,
    SMS_MAX_CHARS,
    MessagesUnavailable,
    email_address,
)
from parley.engine.tools import DTMF_PATTERN, CallContext, Tool, ToolResult, object_schema
from parley.engine.transport import ControlUnavailable
from parley.inputs import dialable


def _end_call(settings: ToolSettings, _: CallContext) -> Tool:
    """Hang up once the goodbye said before it was heard."""

    async def end_call(_: dict[str, Any]) -> ToolResult:
        return ToolResult({"ended": True}, end_call=True)

    return Tool(
        "end_call",
        settings.description or "End the call.",
        settings.parameters,
        end_call,
        settings.timeout_s,
        side_effect=True,
        filler=False,
        closes_call=True,
    )


def _send_dtmf(settings: ToolSettings, context: CallContext) -> Tool:
    """Press keys on the far end's keypad (an automated menu, an extension), once what was said before
    was heard."""

    async def send_dtmf(arguments: dict[str, Any]) -> dict[str, Any]:
        digits = arguments["digits"]
        try:
            await context.controls.send_dtmf(digits)
        except ControlUnavailable as exc:
            raise RuntimeError(f"{exc}; tell the caller you cannot press keys on this call") from exc
        return {"sent": digits}

    return Tool(
        "send_dtmf",
        settings.description
        or "Press keys on the phone keypad, for an automated menu or an extension (e.g. '1' or '204#').",
        object_schema(
            {
                "digits": {
                    "type": "string",
                    "pattern": DTMF_PATTERN,
                    "description": "the keys to press, in order: 0-9, * and #",
                }
            },
            ["digits"],
        ),
        send_dtmf,
        settings.timeout_s,
        side_effect=True,
        filler=False,
    )


def _transfer_call(settings: ToolSettings, context: CallContext) -> Tool:
    """Send the caller on to one of the agent's configured destinations. The model only ever names one
    (an enum in the schema): a number it made up, or one a caller talked it into, cannot be dialed."""
    destinations = dict(settings.destinations)
    names = sorted(destinations)

    async def transfer_call(arguments: dict[str, Any]) -> dict[str, Any]:
        name = arguments["destination"]
        try:
            await context.controls.transfer(destinations[name])
        except ControlUnavailable as exc:
            raise RuntimeError(f"{exc}; tell the caller you cannot transfer them") from exc
        return {"transferred": True, "destination": name}

    return Tool(
        "transfer_call",
        settings.description
        or "Transfer the caller to a person or team. Say goodbye first; the call leaves you once it is sent.",
        {
            "type": "object",
            "properties": {
                "destination": {"type": "string", "enum": names, "description": "where to send the call"}
            },
            "required": ["destination"],
            "additionalProperties": False,
        },
        transfer_call,
        settings.timeout_s,
        side_effect=True,
        filler=False,
    )


_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _message_text(text: str) -> str:
    """The model's words as a message carries them: line breaks kept, other control characters (and NUL,
    which a database cannot store) dropped, no surrounding blanks."""
    return _CONTROL_CHARS.sub("", text.replace("\r\n", "\n").replace("\r", "\n")).strip()


@dataclass(slots=True)
class _MessageBudget:
    """How many more messages one tool may send on this call (tools are built per call)."""

    limit: int
    used: int = 0

    def take(self, what: str) -> None:
        if self.used >= self.limit:
            raise RuntimeError(
                f"this call already sent {self.limit} {what}, the most it may; "
                f"tell the caller no more {what} can be sent on this call"
            )
        self.used += 1

    async def spend(self, what: str, verb: str, send: Callable[[], Awaitable[object]]) -> None:
        """Send one message within the budget; a channel that cannot take it costs nothing and becomes
        a sentence the model can say."""
        self.take(what)
        try:
            await send()
        except MessagesUnavailable as exc:
            self.used -= 1
            raise RuntimeError(f"{exc}; tell the caller you cannot {verb} them") from exc


def _recipient_names(settings: ToolSettings) -> list[str]:
    return ([CALLER] if settings.to_caller else []) + sorted(settings.recipients)


def _recipient_schema(names: list[str], verb: str) -> dict[str, Any]:
    caller = f"'{CALLER}' is the person on this call; " if CALLER in names else ""
    return {
        "type": "string",
        "enum": names,
        "description": f"who to {verb}: {caller}the others are the people this agent may {verb}",
    }


def _send_sms(settings: ToolSettings, context: CallContext) -> Tool:
    """Text the caller or one of the agent's configured recipients words the model wrote, through the
    notification outbox. The model names a recipient (an enum), never a number."""
    recipients = dict(settings.recipients)
    names = _recipient_names(settings)
    budget = _MessageBudget(settings.max_per_call)

    def number_of(name: str) -> str:
        if name not in names:  # the schema's enum says so too; a handler never trusts only that
            raise RuntimeError(f"'{name}' is not someone this agent may text (only: {', '.join(names)})")
        if name != CALLER:
            return recipients[name]
        if not context.caller_number:
            raise RuntimeError(
                "there is no phone number for the caller on this call; tell them you cannot text them"
            )
        try:
            return dialable(context.caller_number)  # a spoofed premium-rate caller id is never texted
        except ValueError as exc:
            raise RuntimeError(
                "the caller's number cannot get texts; tell them you cannot text them"
            ) from exc

    async def send_sms(arguments: dict[str, Any]) -> dict[str, Any]:
        name, body = arguments["to"], _message_text(arguments["body"])
        if not body:
            raise RuntimeError("the text is empty: write what it should say")
        if len(body) > SMS_MAX_CHARS:
            raise RuntimeError(
                f"the text is {len(body)} characters and a text may have at most {SMS_MAX_CHARS}: "
                "shorten it and send it again"
            )
        to = number_of(name)
        await budget.spend("texts", "text", lambda: context.messages.send_sms(to, body))
        return {"queued": True, "to": name}

    return Tool(
        "send_sms",
        settings.description
        or "Send a text message (SMS), e.g. an address, a booking or a link the caller asked for. Tell the "
        "caller what you are sending.",
        object_schema(
            {
                "to": _recipient_schema(names, "text"),
                "body": {
                    "type": "string",
                    "minLength": 1,
                    "description": f"the text message, at most {SMS_MAX_CHARS} characters",
                },
            },
            ["to", "body"],
        ),
        send_sms,
        settings.timeout_s,
        side_effect=True,
        filler=False,
    )


def _send_email(settings: ToolSettings, context: CallContext) -> Tool:
    """Email the caller (the address the call was started with, ``metadata.email``) or one of the agent's
    configured recipients, through the notification outbox. The model names a recipient, never an
    address."""
    recipients = dict(settings.recipients)
    names = _recipient_names(settings)
    budget = _MessageBudget(settings.max_per_call)

    def address_of(name: str) -> str:
        if name not in names:
            raise RuntimeError(f"'{name}' is not someone this agent may email (only: {', '.join(names)})")
        if name != CALLER:
            return recipients[name]
        known = context.metadata.get("email")
        if not isinstance(known, str) or not known:
            raise RuntimeError(
                "there is no email address for the caller on this call; tell them you cannot email them"
            )
        try:
            return email_address(known)
        except ValueError as exc:
            raise RuntimeError(
                "the caller's email address is not valid; tell them you cannot email them"
            ) from exc

    async def send_email(arguments: dict[str, Any]) -> dict[str, Any]:
        name, body = arguments["to"], _message_text(arguments["body"])
        subject = " ".join(_CONTROL_CHARS.sub(" ", arguments["subject"]).split())
        if not subject or not body:
            raise RuntimeError("the email needs a subject and a body: write both")
        if len(subject) > EMAIL_SUBJECT_MAX_CHARS:
            raise RuntimeError(
                f"the subject is {len(subject)} characters and may have at most {EMAIL_SUBJECT_MAX_CHARS}: "
                "shorten it and send it again"
            )
        if len(body) > EMAIL_BODY_MAX_CHARS:
            raise RuntimeError(
                f"the email is {len(body)} characters and may have at most {EMAIL_BODY_MAX_CHARS}: "
                "shorten it and send it again"
            )
        to = address_of(name)
        await budget.spend("emails", "email", lambda: context.messages.send_email(to, subject, body))
        return {"queued": True, "to": name}

    return Tool(
        "send_email",
        settings.description
        or "Send an email, e.g. a summary, a quote or directions the caller asked for. Tell the caller what "
        "you are sending.",
        object_schema(
            {
                "to": _recipient_schema(names, "email"),
                "subject": {
                    "type": "string",
                    "minLength": 1,
                    "description": f"the subject line, at most {EMAIL_SUBJECT_MAX_CHARS} characters",
                },
                "body": {
                    "type": "string",
                    "minLength": 1,
                    "description": f"the email's text, at most {EMAIL_BODY_MAX_CHARS} characters",
                },
            },
            ["to", "subject", "body"],
        ),
        send_email,
        settings.timeout_s,
        side_effect=True,
        filler=False,
    )


BUILTIN_TOOLS: dict[str, Callable[[ToolSettings, CallContext], Tool]] = {
    "end_call": _end_call,
    "transfer_call": _transfer_call,
    "send_dtmf": _send_dtmf,
    "send_sms": _send_sms,
    "send_email": _send_email,
}
"""Built-in tools by name: ordinary tools that act on the call through their result or context."""
