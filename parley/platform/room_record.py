"""What a coached room leaves on its call: the recording (customer left, everyone else right, and each
leg on its own), the coach's summary (``metadata.coaching``, ``metadata.room``) and the legs Parley dialed
(``metadata.phone_legs``). Apart from the live room because the room's end and a phone leg's carrier
callbacks write the same metadata, both through ``locked_call``.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.audio.mixer import mix
from parley.audio.wav import write_wav
from parley.platform.usage import PHONE_LEGS
from parley.rooms import ROOM_RATE, Role, RoomRecording
from parley.store.calls import CallRepository
from parley.store.models import Call

if TYPE_CHECKING:
    from parley.platform.runtime import Platform

log = structlog.get_logger("parley.platform.room_record")

RESERVED_METADATA = ("room", "coaching", PHONE_LEGS)
"""Keys of the call's metadata the room writes; a request may not set them (its phone legs are billed)."""


async def locked_call(session: AsyncSession, call_id: str) -> Call | None:
    """The call's row, read to change its metadata (the room's end and its phone legs' callbacks write it
    at the same moment): written first, so SQLite gives this transaction the one write lock and PostgreSQL
    the row's lock, and read after, so neither writer loses the other's keys."""
    await CallRepository(session).touch([call_id])
    return await session.scalar(
        select(Call).where(Call.id == call_id).with_for_update().execution_options(populate_existing=True)
    )


def phone_legs_of(row: Call) -> list[dict[str, Any]]:
    legs = (row.metadata_ or {}).get(PHONE_LEGS)
    return [dict(leg) for leg in legs if isinstance(leg, dict)] if isinstance(legs, list) else []


async def store_recording(
    platform: Platform,
    room_id: str,
    call_id: str,
    recording: RoomRecording | None,
    roles: Mapping[str, Role],
) -> dict[str, Any]:
    """The call's recording: customer left, everyone else right (an observer's mix, whispers
    included); and each leg on its own beside it. Returns where the legs went."""
    if recording is None or recording.duration_s <= 0:
        return {}
    try:
        legs = {pid: recording.leg(pid) for pid in recording.participant_ids}
        length = max((pcm.size for pcm in legs.values()), default=0)
        customer = [pcm for pid, pcm in legs.items() if roles.get(pid) is Role.CUSTOMER]
        others = [pcm for pid, pcm in legs.items() if roles.get(pid) is not Role.CUSTOMER]
        await platform.recordings.store(call_id, (mix(customer, length), mix(others, length)), ROOM_RATE)
        keys: dict[str, str] = {}
        with tempfile.TemporaryDirectory(prefix="parley-room-") as scratch:
            for pid, pcm in legs.items():
                path = Path(scratch) / f"leg-{pid}.wav"
                await asyncio.to_thread(write_wav, path, pcm, ROOM_RATE)
                key = f"recordings/{call_id}/leg-{pid}.wav"
                await platform.artifacts.put_file(key, path, "audio/wav", move=True)
                keys[pid] = key
        return {
            "legs": keys,
            "truncated": recording.truncated,
            "duration_s": round(recording.duration_s, 2),
        }
    except Exception:  # the call's record must survive a storage failure
        log.exception("storing a coached room's recording failed", room_id=room_id, call_id=call_id)
        return {}


async def store_summary(
    platform: Platform,
    *,
    room_id: str,
    call_id: str,
    name: str,
    roles: Mapping[str, Role],
    recording: Mapping[str, Any],
    summary: Callable[[], dict[str, Any]],
) -> None:
    """The coach's summary and who took part, in the call's metadata (``coaching``, ``room``)."""
    room = {
        "id": room_id,
        "name": name,
        "participants": [{"id": pid, "role": str(role)} for pid, role in roles.items()],
        "recording": dict(recording),
    }
    try:
        coaching = summary()
        async with platform.db.session() as session:
            row = await locked_call(session, call_id)  # a phone leg's end may be written meanwhile
            if row is not None:
                row.metadata_ = {**(row.metadata_ or {}), "room": room, "coaching": coaching}
    except Exception:  # the call still completes; its timeline holds every trigger and hint
        log.exception("storing a coached room's summary failed", room_id=room_id, call_id=call_id)
