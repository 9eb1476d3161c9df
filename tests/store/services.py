"""Throwaway PostgreSQL and Redis servers for the test-suite: real servers, temp dirs, loopback ports.

Each starts once per pytest process (on first use) and is stopped at exit. Set PARLEY_TEST_POSTGRES_URL
or PARLEY_TEST_REDIS_URL to use servers you already run (``scripts/services.sh start`` prints them).
The servers come from Debian's ``postgresql`` and ``redis-server`` (``scripts/services.sh`` installs them).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """The server gets SIGTERM if pytest dies without cleaning up."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until(
    ready: Callable[[], bool], process: subprocess.Popen[bytes], what: str, not_yet: str, timeout: float
) -> None:
    """Poll ``ready`` until it holds; a server that exits or is ``not_yet`` ready in ``timeout`` s fails."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} during start-up")
        if ready():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} {not_yet} in {timeout} s")


def _wait_port(port: int, process: subprocess.Popen[bytes], what: str, timeout: float = 20.0) -> None:
    def listening() -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    _wait_until(listening, process, what, f"did not start listening on port {port}", timeout)


class ServiceMissing(RuntimeError):
    pass


@dataclass
class _Server:
    url: str
    process: subprocess.Popen[bytes] | None = None
    workdir: Path | None = None
    log: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # PostgreSQL's "fast" shutdown; Redis exits too
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


_servers: dict[str, _Server] = {}


def _postgres_bin() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if not candidates:
        raise ServiceMissing(
            "PostgreSQL is not installed: run scripts/services.sh (Debian package postgresql)"
        )
    return Path(candidates[-1]).parent


def postgres_url() -> str:
    """A superuser URL (asyncpg driver) to a running PostgreSQL, its ``postgres`` database."""
    if url := os.environ.get("PARLEY_TEST_POSTGRES_URL"):
        return url
    if "postgres" not in _servers:
        _servers["postgres"] = _start_postgres()
    return _servers["postgres"].url


def _start_postgres() -> _Server:
    bindir = _postgres_bin()
    workdir = Path(tempfile.mkdtemp(prefix="parley-pg-"))
    user = None
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        user = "postgres"
        entry = pwd.getpwnam(user)
        os.chown(workdir, entry.pw_uid, entry.pw_gid)
    data, log = workdir / "data", workdir / "postgres.log"
    subprocess.run(
        [
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "parley",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ],
        check=True,
        capture_output=True,
        user=user,
    )
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-k",
                str(workdir),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
                "-c",
                "timezone=Asia/Kolkata",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            user=user,
            preexec_fn=_die_with_parent,
        )
    server = _Server(f"postgresql+asyncpg://parley@127.0.0.1:{port}/postgres", process, workdir, log)
    atexit.register(server.stop)
    _wait_port(port, process, "postgres")
    _wait_postgres_ready(bindir, port, process)
    return server


def _wait_postgres_ready(bindir: Path, port: int, process: subprocess.Popen[bytes]) -> None:
    """PostgreSQL listens before it has finished starting and refuses sessions until then ("the
    database system is starting up"); on a busy machine that window is long enough for a test to hit it."""
    probe = [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-U", "parley", "-q"]
    _wait_until(
        lambda: subprocess.run(probe, check=False).returncode == 0,
        process,
        "postgres",
        f"on port {port} did not accept sessions",
        30.0,
    )


def redis_url() -> str:
    if url := os.environ.get("PARLEY_TEST_REDIS_URL"):
        return url
    if "redis" not in _servers:
        _servers["redis"] = _start_redis()
    return _servers["redis"].url


def _start_redis() -> _Server:
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceMissing(
            "redis-server is not installed: run scripts/services.sh (Debian package redis-server)"
        )
    workdir = Path(tempfile.mkdtemp(prefix="parley-redis-"))
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--loglevel",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,
    )
    server = _Server(f"redis://127.0.0.1:{port}/0", process, workdir)
    atexit.register(server.stop)
    _wait_port(port, process, "redis-server")
    return server


def moto_url() -> str:
    """An S3 endpoint: moto in its standalone server mode (real HTTP, in a subprocess)."""
    if "moto" not in _servers:
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        server = _Server(f"http://127.0.0.1:{port}", process)
        atexit.register(server.stop)
        _wait_port(port, process, "moto_server")
        _servers["moto"] = server
    return _servers["moto"].url
