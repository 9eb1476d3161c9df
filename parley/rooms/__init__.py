"""Rooms: calls with several legs (customer, rep, coach, agent), mixed under a per-participant policy,
each leg transcribed on its own, recorded leg by leg and as a mix."""

from parley.rooms.model import (
    ROOM_RATE,
    TICK_S,
    TICK_SAMPLES,
    InvalidParticipant,
    Mode,
    Participant,
    ParticipantExists,
    Role,
    RoomClosed,
    RoomError,
    RoomFull,
    UnknownParticipant,
    Utterance,
    audible,
    default_mode,
)
from parley.rooms.recording import RoomRecording
from parley.rooms.room import Leg, Room
from parley.rooms.transcriber import LegTranscriber, TranscriberFactory, per_leg_transcription

__all__ = [
    "ROOM_RATE",
    "TICK_S",
    "TICK_SAMPLES",
    "InvalidParticipant",
    "Leg",
    "LegTranscriber",
    "Mode",
    "Participant",
    "ParticipantExists",
    "Role",
    "Room",
    "RoomClosed",
    "RoomError",
    "RoomFull",
    "RoomRecording",
    "TranscriberFactory",
    "UnknownParticipant",
    "Utterance",
    "audible",
    "default_mode",
    "per_leg_transcription",
]
