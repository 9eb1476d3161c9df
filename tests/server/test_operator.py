"""What an operator sees when starting ``parley serve``: a taken port is refused at once with a reason
(before a minute of model loading), and the native libraries add nothing to the terminal."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from typer.testing import CliRunner

from parley.engine.agent import AgentConfig
from parley.engine.session import EngineStack
from parley.server.app import create_app
from parley.server.lifecycle import ListenError, bound_port, listen_socket
from parley.server.stacks import AgentCatalog
from tests.engine.harness import agent
from tests.server.conftest import QuietServer, fast_engines, settings


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another server is listening on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield int(other.getsockname()[1])


def test_serve_on_a_taken_port_exits_with_a_one_line_reason(taken_port: int, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "parley.cli", "serve", "--host", "127.0.0.1", "--port", str(taken_port)],
        capture_output=True,
        text=True,
        timeout=120,  # a hang guard only: the refusal comes before any model is loaded
        env={**os.environ, "PARLEY_DATA_DIR": str(tmp_path), "COLUMNS": "60"},
    )
    assert done.returncode != 0
    assert done.stdout == ""
    assert done.stderr.strip() == (
        f"error: port {taken_port} on 127.0.0.1 is in use; stop the other server or pass --port"
    )


def test_a_taken_port_is_refused_before_the_app_and_its_models_are_built(
    taken_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import parley.server.app
    from parley.cli import app

    built: list[object] = []

    def build(*args: object, **kwargs: object) -> object:
        built.append(args)
        raise AssertionError("the app (and with it the models) must not be built")

    monkeypatch.setattr(parley.server.app, "create_platform_app", build)
    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["serve", "--host", "127.0.0.1", "--port", str(taken_port)])
    assert result.exit_code == 1
    assert f"port {taken_port} on 127.0.0.1 is in use" in result.output
    assert built == []


@pytest.mark.parametrize(
    ("host", "port", "reason"),
    [
        ("192.0.2.1", 0, "192.0.2.1 is not an address of this machine; pass --host"),  # TEST-NET-1
        ("no-such-host.invalid", 0, "cannot resolve host 'no-such-host.invalid'"),
        ("127.0.0.1", 70000, "port 70000 is out of range (0-65535)"),
    ],
)
def test_other_addresses_that_cannot_be_listened_on_say_why(host: str, port: int, reason: str) -> None:
    with pytest.raises(ListenError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        listen_socket(host, port)


async def test_the_server_listens_on_the_socket_bound_before_start() -> None:
    """No window in which another process could take the port: the bound socket is the one served."""
    app = create_app(settings(), catalog=AgentCatalog([agent(name="assistant")]), stack_factory=_fast)
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    server = QuietServer(config, drain=lambda: app.state.runtime.drain())
    with listen_socket("127.0.0.1", 0) as sock:
        port = int(sock.getsockname()[1])
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
            assert bound_port(server) == port
            async with httpx.AsyncClient() as http:
                assert (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 15)


async def _fast(_: AgentConfig) -> EngineStack:
    return fast_engines([], [])


@pytest.mark.models
def test_loading_the_llm_writes_nothing_to_the_terminal(capfd: pytest.CaptureFixture[str]) -> None:
    """llama.cpp used to dump the model's metadata and warnings on stderr at every start."""
    from parley.providers.llm.llamacpp import LlamaCppModel
    from tests.helpers.llm_assets import gemma_gguf

    path = gemma_gguf()
    capfd.readouterr()
    model = LlamaCppModel(path)
    try:
        assert model.count_tokens("hello") > 0
    finally:
        model.close()
    captured = capfd.readouterr()
    assert captured.err == ""
    assert captured.out == ""


@pytest.mark.models
def test_other_threads_output_survives_while_the_llm_loads(capfd: pytest.CaptureFixture[str]) -> None:
    """llama-cpp-python silenced the whole process's stderr during a load: ``parley serve``'s "listening
    on" line, printed as the models loaded, went missing."""
    from parley.providers.llm.llamacpp import LlamaCppModel
    from tests.helpers.llm_assets import gemma_gguf

    path = gemma_gguf()
    loading = threading.Event()
    loaded = threading.Event()
    written: list[int] = []

    def chatter() -> None:
        loading.wait()
        while not loaded.is_set():
            print(f"line {len(written)}", file=sys.stderr, flush=True)
            written.append(len(written))
            loaded.wait(0.002)

    writer = threading.Thread(target=chatter)
    writer.start()
    capfd.readouterr()
    loading.set()
    try:
        LlamaCppModel(path).close()
    finally:
        loaded.set()
        writer.join()
    lines = [line for line in capfd.readouterr().err.splitlines() if line.startswith("line ")]
    assert lines == [f"line {i}" for i in written]
