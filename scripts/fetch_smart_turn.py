#!/usr/bin/env python3
"""Put the Smart Turn v3.2 end-of-turn model into Parley's model cache.

The model ships as data inside the ``pipecat-ai`` wheel on PyPI. We download that one wheel with pip
(the only channel we allow for models), pull the single ``.onnx`` member out with ``zipfile`` and never
install or import pipecat itself. Standard library only, so it runs on a fresh machine before anything
else is set up.

Usage: ``python scripts/fetch_smart_turn.py [--wheel PATH] [--force]``
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PIPECAT_REQUIREMENT = "pipecat-ai==1.14.0"
WHEEL_MEMBER = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
MODEL_FILENAME = "smart-turn-v3.2-cpu.onnx"
MODEL_BYTES = 8_679_182
MODEL_SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"
LICENSE_FILENAME = MODEL_FILENAME + ".LICENSE.txt"

LICENSE_NOTE = f"""\
{MODEL_FILENAME}
Smart Turn v3.2 end-of-turn model, from the pipecat project (https://github.com/pipecat-ai/pipecat
and https://github.com/pipecat-ai/smart-turn), taken unmodified from the PyPI wheel {PIPECAT_REQUIREMENT}
(member {WHEEL_MEMBER}).

License: BSD 2-Clause License
Copyright (c) 2024-2026, Daily

Redistribution and use in source and binary forms, with or without modification, are permitted provided
that the following conditions are met:

1. Redistributions of source code must retain the above copyright notice, this list of conditions and
   the following disclaimer.

2. Redistributions in binary form must reproduce the above copyright notice, this list of conditions and
   the following disclaimer in the documentation and/or other materials provided with the distribution.

THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS" AND ANY EXPRESS OR IMPLIED
WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A
PARTICULAR PURPOSE ARE DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT HOLDER OR CONTRIBUTORS BE LIABLE FOR
ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL DAMAGES (INCLUDING, BUT NOT
LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS OR SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS
INTERRUPTION) HOWEVER CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY, OR
TORT (INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF THE USE OF THIS SOFTWARE, EVEN IF
ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.
"""


class FetchError(RuntimeError):
    """The model could not be obtained (no index reachable, wrong wheel, corrupt member)."""


def model_cache_dir() -> Path:
    """Same rule as ``parley.audio.turn.model_cache_dir`` (kept stdlib-only here on purpose)."""
    configured = os.environ.get("PARLEY_MODEL_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "parley" / "models"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download_wheel(dest: Path) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--dest",
        str(dest),
        PIPECAT_REQUIREMENT,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(dest.glob("pipecat_ai-*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise FetchError(f"`pip download {PIPECAT_REQUIREMENT}` failed (exit {proc.returncode}):\n{tail}")
    return wheels[0]


def _extract(wheel: Path, target: Path) -> None:
    """Write the member to a temp file beside ``target`` and rename, so a crash never leaves half a model."""
    tmp = target.with_name(target.name + ".part")
    try:
        with zipfile.ZipFile(wheel) as zf:
            try:
                info = zf.getinfo(WHEEL_MEMBER)
            except KeyError as exc:
                raise FetchError(f"{wheel.name} has no member {WHEEL_MEMBER}") from exc
            with zf.open(info) as src, tmp.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        got = _sha256(tmp)
        if got != MODEL_SHA256:
            raise FetchError(f"{WHEEL_MEMBER} from {wheel.name} has sha256 {got}, expected {MODEL_SHA256}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def fetch_smart_turn(
    cache_dir: Path | None = None, *, wheel: Path | None = None, force: bool = False
) -> Path:
    """Return the path of the model in the cache, downloading it only when missing or the wrong size.

    ``wheel`` points at an already downloaded pipecat-ai wheel (offline installs); otherwise pip fetches it
    from the configured package index into a temporary directory that is removed afterwards.
    """
    directory = cache_dir if cache_dir is not None else model_cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / MODEL_FILENAME
    license_path = directory / LICENSE_FILENAME
    if not force and target.is_file() and target.stat().st_size == MODEL_BYTES:
        if not license_path.is_file():
            license_path.write_text(LICENSE_NOTE, encoding="utf-8")
        return target
    if wheel is not None:
        _extract(wheel, target)
    else:
        with tempfile.TemporaryDirectory(prefix="parley-pipecat-") as tmp:
            _extract(_download_wheel(Path(tmp)), target)
    license_path.write_text(LICENSE_NOTE, encoding="utf-8")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--wheel", type=Path, help="use this local pipecat-ai wheel instead of pip download")
    parser.add_argument(
        "--cache-dir", type=Path, help="default: $PARLEY_MODEL_CACHE or ~/.cache/parley/models"
    )
    parser.add_argument("--force", action="store_true", help="extract again even if the file looks right")
    args = parser.parse_args(argv)
    try:
        path = fetch_smart_turn(args.cache_dir, wheel=args.wheel, force=args.force)
    except (FetchError, OSError, zipfile.BadZipFile) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
