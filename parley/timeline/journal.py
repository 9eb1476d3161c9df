"""An append-only file per live session: what makes the in-process timeline survive a SIGKILL.

``emit`` writes each event as a JSON line before anything else sees it (one ``write`` call, no fsync:
the kernel keeps it when the process dies, only a machine crash can lose it). The file is removed once
the persister has acknowledged the session's last event. Whatever is left on disk at start-up belongs
to a process that died mid-call; each writer holds an exclusive ``flock`` on its file, so recovery can
tell a dead writer's journal from one a live process (another worker, ``parley simulate``) is writing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import structlog

from parley.timeline.envelope import Envelope

log = structlog.get_logger("parley.timeline.journal")

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def _filename(session_id: str) -> str:
    return _UNSAFE.sub("_", session_id)[:120] + ".jsonl"


@dataclass(slots=True)
class Orphan:
    """A dead writer's journal, locked by us until ``remove`` or ``release``."""

    path: Path
    envelopes: list[Envelope] = field(default_factory=list)
    _file: IO[str] | None = None

    @property
    def session_id(self) -> str | None:
        return self.envelopes[0].session_id if self.envelopes else None

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.release()

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class Journal:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._files: dict[str, IO[str]] = {}

    def append(self, envelope: Envelope) -> None:
        file = self._files.get(envelope.session_id)
        if file is None:
            file = self._open(envelope.session_id)
        file.write(envelope.dumps() + "\n")  # line-buffered: one write(2) per event

    def _open(self, session_id: str) -> IO[str]:
        file = (self.directory / _filename(session_id)).open("a", buffering=1, encoding="utf-8")
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._files[session_id] = file
        return file

    def discard(self, session_id: str) -> None:
        """The session is safely persisted: its journal is no longer needed."""
        file = self._files.pop(session_id, None)
        with contextlib.suppress(FileNotFoundError):
            (self.directory / _filename(session_id)).unlink()
        if file is not None:
            file.close()

    def close(self) -> None:
        """Close without removing: sessions not yet persisted are recovered at the next start."""
        for file in self._files.values():
            file.close()
        self._files.clear()

    @staticmethod
    def orphans(directory: Path) -> Iterator[Orphan]:
        """Journals whose writer is gone, each parsed and locked (a torn last line is skipped)."""
        if not directory.is_dir():
            return
        for path in sorted(directory.glob("*.jsonl")):
            try:
                file = path.open("r+", encoding="utf-8")
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                file.close()  # a live process is writing it
                continue
            if not os.path.exists(path):  # removed by its writer between our open and lock
                file.close()
                continue
            orphan = Orphan(path, _file=file)
            for line in file:
                try:
                    orphan.envelopes.append(Envelope.loads(line))
                except (ValueError, KeyError, TypeError):
                    log.warning("skipping a torn journal line", path=str(path))
            yield orphan
