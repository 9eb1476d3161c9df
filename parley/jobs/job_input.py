"""What a request to queue an outbound call must be: its numbers in E.164, its metadata plain JSON.

The checks ``OutboundQueue.submit`` runs on what it is asked before anything touches the store, and the
error they raise (the API answers it with 422), kept apart from the queue so the rules a caller must meet
read in one place.
"""

from __future__ import annotations

import json
from typing import Any

import phonenumbers

from parley.inputs import plain_json

MAX_METADATA_BYTES = 16_384


class InvalidOutboundJob(ValueError):
    """A call that cannot be queued as asked (a number that is not E.164, an unknown time zone …)."""


def e164(value: str, what: str) -> phonenumbers.PhoneNumber:
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidOutboundJob(
            f"{what} {value!r} is not a phone number in E.164 form (+14155550100)"
        ) from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidOutboundJob(f"{what} {value!r} is not a valid phone number")
    return number


def formatted(number: phonenumbers.PhoneNumber) -> str:
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def checked_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    try:
        plain_json(metadata)
        size = len(json.dumps(metadata, allow_nan=False))
    except (ValueError, TypeError) as exc:
        raise InvalidOutboundJob(f"metadata must be plain JSON: {exc}") from exc
    if size > MAX_METADATA_BYTES:
        raise InvalidOutboundJob(f"metadata is larger than {MAX_METADATA_BYTES} bytes")
    return metadata
