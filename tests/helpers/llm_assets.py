"""Test-side access to the embedded models: the GGUF file and a real llama.cpp server on loopback."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from parley.providers import assets


def gemma_gguf() -> Path:
    """The Gemma 3 270M GGUF, assembled once into Parley's model cache."""
    return assets.gemma_gguf()


def qwen_gguf() -> Path:
    """The default instruct model, Qwen2.5-Coder 0.5B, assembled once into Parley's model cache."""
    return assets.qwen_gguf()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def llama_server(model: Path, *, ready_timeout: float = 60.0) -> Iterator[str]:
    """Run ``python -m llama_cpp.server`` on a free loopback port; yields its ``/v1`` base URL."""
    with llama_server_process(model, ready_timeout=ready_timeout) as (base, _):
        yield base


@contextlib.contextmanager
def llama_server_process(
    model: Path, *, ready_timeout: float = 60.0
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``llama_server``, also yielding the process (a test may kill it mid-call)."""
    port = free_port()
    log = tempfile.TemporaryFile()  # noqa: SIM115  # closed in the finally below
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "1024",
            "--n_threads",
            "2",
            "--model_alias",
            "gemma",
            # The GGUF has no chat template and the default (llama-2) makes this base model answer with
            # an immediate end-of-text; Vicuna's "USER: ... ASSISTANT:" transcript suits it.
            "--chat_format",
            "vicuna",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"llama.cpp server exited: {log.read()[-2000:].decode(errors='replace')}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/models", timeout=1.0).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError("llama.cpp server did not become ready")
            time.sleep(0.2)
        yield base, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
