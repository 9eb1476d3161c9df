"""Who hears whom: every speaker mode against every listener role, and nobody hears themselves."""

from __future__ import annotations

import itertools

import pytest

from parley.rooms import Mode, Participant, Role, audible, default_mode

HEARD_BY: dict[Mode, set[Role]] = {
    Mode.SPEAK: set(Role),
    Mode.BARGE: set(Role),
    Mode.WHISPER: {Role.REP},
    Mode.LISTEN: set(),
}


@pytest.mark.parametrize(("mode", "role"), list(itertools.product(Mode, Role)))
def test_every_speaker_mode_against_every_listener_role(mode: Mode, role: Role) -> None:
    speaker = Participant("speaker", Role.COACH, mode)
    for listener_mode in Mode:  # what a listener hears does not depend on its own mode
        listener = Participant("listener", role, listener_mode)
        assert audible(speaker, listener) is (role in HEARD_BY[mode])


@pytest.mark.parametrize(("mode", "role"), list(itertools.product(Mode, Role)))
def test_nobody_hears_themselves(mode: Mode, role: Role) -> None:
    me = Participant("same-id", role, mode)
    assert not audible(me, me)


def test_a_coach_comes_in_listening_and_everyone_else_as_a_party() -> None:
    assert default_mode(Role.COACH) is Mode.LISTEN
    assert {default_mode(r) for r in (Role.CUSTOMER, Role.REP, Role.AGENT)} == {Mode.SPEAK}
