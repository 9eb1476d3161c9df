"""Work a caller is waiting for goes first; work that can wait gives way between its steps, not forever."""

from __future__ import annotations

import threading

from parley.providers.foreground import FOREGROUND, Foreground, in_foreground


def test_waiting_work_goes_on_once_the_foreground_is_let_go() -> None:
    foreground = Foreground()
    released = threading.Event()
    order: list[str] = []
    holding = threading.Event()

    def voice() -> None:
        with foreground.hold():
            holding.set()
            released.wait(5)
            order.append("voiced")

    thread = threading.Thread(target=voice)
    thread.start()
    holding.wait(5)
    threading.Timer(0.05, released.set).start()
    foreground.give_way(limit_s=5)
    order.append("next word")
    thread.join()
    assert order == ["voiced", "next word"]
    assert not foreground.held


def test_waiting_work_does_not_starve_behind_a_busy_voice() -> None:
    foreground = Foreground()
    with foreground.hold():
        foreground.give_way(limit_s=0.05)  # returns although still held
        assert foreground.held


def test_a_call_run_in_the_foreground_holds_it_while_it_runs() -> None:
    assert in_foreground(lambda: FOREGROUND.held)() is True
    assert not FOREGROUND.held
