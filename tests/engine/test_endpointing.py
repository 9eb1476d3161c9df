import itertools

from hypothesis import given
from hypothesis import strategies as st

from parley.audio.endpointing import Boundary, Endpointer

FRAME = 0.032


def run(probs: list[float], **kwargs: float) -> list[tuple[Boundary, float]]:
    ep = Endpointer(**kwargs)
    out = []
    for i, p in enumerate(probs):
        b = ep.update(p, i * FRAME, FRAME)
        if b:
            out.append((b.kind, round(b.at, 3)))
    return out


def test_speech_start_is_stamped_at_the_first_voiced_frame() -> None:
    events = run([0.0, 0.0, 0.9, 0.9, 0.9, 0.0, 0.0, 0.0, 0.0], min_speech=0.064, pause=0.096)
    assert events == [(Boundary.STARTED, round(2 * FRAME, 3)), (Boundary.PAUSED, round(5 * FRAME, 3))]


def test_a_click_shorter_than_min_speech_is_ignored() -> None:
    assert run([0.0, 0.9, 0.0, 0.0, 0.0], min_speech=0.064) == []


def test_hysteresis_keeps_speech_through_middling_probabilities() -> None:
    probs = [0.9, 0.9, 0.45, 0.4, 0.45, 0.4, 0.9] + [0.0] * 4
    events = run(probs, start_threshold=0.5, stop_threshold=0.35, min_speech=0.064, pause=0.096)
    assert [e[0] for e in events] == [Boundary.STARTED, Boundary.PAUSED]


def test_voice_coming_back_is_starting_until_it_is_speech_or_gone() -> None:
    ep = Endpointer(min_speech=0.064, pause=0.096)
    states = []
    for i, p in enumerate([0.9, 0.9, 0.9, 0.0, 0.0, 0.0, 0.0, 0.9, 0.0, 0.9, 0.45, 0.9, 0.9]):
        ep.update(p, i * FRAME, FRAME)
        states.append(ep.starting)
    assert states == [
        True, False, False,  # the first voiced frame; then it is speech
        False, False, False, False,  # the pause
        True, False,  # a click, gone
        True, False,  # back, then middling: a noisy line does not hold the turn open
        False, False,  # voiced again: with the first frame, that is speech
    ]  # fmt: skip


@given(st.lists(st.floats(0, 1), max_size=200))
def test_boundaries_alternate(probs: list[float]) -> None:
    kinds = [k for k, _ in run(probs)]
    assert all(a != b for a, b in itertools.pairwise(kinds))
    if kinds:
        assert kinds[0] is Boundary.STARTED
