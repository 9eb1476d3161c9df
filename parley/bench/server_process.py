"""A Parley server in a child process, so a benchmark's client never shares its event loop or its CPU."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping

READY = "PARLEY_SERVER_READY port="


def announce_port(port: int) -> None:
    """Called by the child once it serves (and its models are warm)."""
    print(f"{READY}{port}", flush=True)


@contextlib.contextmanager
def server_process(
    args: list[str], stop_timeout_s: float = 30.0, env: Mapping[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """Start ``python <args>`` (with ``env``, else this process's environment), wait until it announces
    its port, and stop it (SIGTERM) afterwards."""
    child = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, text=True, env=env)
    try:
        yield child, _wait_ready(child)
    finally:
        child.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(stop_timeout_s)
        if child.poll() is None:
            child.kill()
            child.wait()


def _wait_ready(child: subprocess.Popen[str]) -> int:
    assert child.stdout is not None
    stdout = child.stdout
    for line in stdout:
        if line.startswith(READY):
            # Keep draining, so the child never blocks on a full pipe.
            threading.Thread(target=lambda: all(True for _ in stdout), daemon=True).start()
            return int(line[len(READY) :].strip())
    raise RuntimeError(f"the server process exited before it was ready (code {child.wait()})")
