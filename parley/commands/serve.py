"""``parley serve`` and the live benchmarks (``parley bench live``, ``parley bench load``).

The functions are plain Typer commands; ``parley/cli.py`` registers them.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import Coroutine
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from parley.commands.output import shown

if TYPE_CHECKING:
    from parley.config import Settings
    from parley.engine.agent import AgentConfig

err = Console(stderr=True)
out = Console()


class Transport(StrEnum):
    ws = "ws"
    webrtc = "webrtc"


def serve(
    host: Annotated[str | None, typer.Option(help="interface to listen on (default PARLEY_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default PARLEY_PORT, 8000)")] = None,
    agent: Annotated[
        str | None,
        typer.Option(
            "--agent",
            help="the default agent: a YAML file, or module:attribute naming a parley.Agent (Python)",
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "warning",
) -> None:
    """Serve the browser voice page and live sessions, with the embedded offline models."""
    from parley.config import get_settings
    from parley.server.lifecycle import ListenError, listen_socket

    settings = get_settings()
    bind = host or settings.host
    # The port first: a taken one should fail now, with a reason, not after a minute of model loading.
    try:
        listener = listen_socket(bind, settings.port if port is None else port)
    except ListenError as exc:
        err.print(f"[red]error:[/red] {shown(str(exc), lines=True)}", soft_wrap=True, highlight=False)
        raise typer.Exit(1) from exc
    with listener:
        _serve_on(listener, settings, bind, agent, log_level)


def load_served_agent(target: str) -> AgentConfig:
    """``--agent``: a YAML file, or ``module:attribute`` (an ``Agent`` defined in Python, with its tools)."""
    from parley.agent_api import load_agent_target
    from parley.engine.agent import load_agent

    path = Path(target)
    if path.suffix.lower() in (".yaml", ".yml") or path.is_file() or ":" not in target:
        return load_agent(path)
    return load_agent_target(target)


def _serve_on(
    listener: socket.socket, settings: Settings, bind: str, agent: str | None, log_level: str
) -> None:
    from parley.engine.agent import AgentConfigError
    from parley.server.app import create_platform_app
    from parley.server.lifecycle import DrainingServer, bound_port, make_server
    from parley.server.stacks import AgentCatalog

    extra = []
    if agent is not None:
        try:
            extra.append(load_served_agent(agent))
        except AgentConfigError as exc:
            err.print(f"[red]error:[/red] {shown(str(exc), lines=True)}")
            raise typer.Exit(2) from exc
    default = extra[0].name if extra else None
    catalog = AgentCatalog(extra_dir=settings.agents_dir, extra=extra, default=default)
    app = create_platform_app(settings, catalog=catalog)

    async def announce(server: DrainingServer) -> None:
        shown = "127.0.0.1" if bind in ("0.0.0.0", "::") else f"[{bind}]" if ":" in bind else bind
        url = f"http://{shown}:{bound_port(server)}/"
        err.print(f"Parley is listening on {url} — loading and warming the models …", soft_wrap=True)
        runtime = app.state.runtime
        await runtime.engines.ready.wait()
        err.print(
            f"[green]Ready.[/green] Open the voice page: [bold]{url}[/bold]  (Ctrl+C to stop)", soft_wrap=True
        )

    make_server(app, settings, host=bind, log_level=log_level, on_started=announce).run(sockets=[listener])


def bench_live(
    transport: Annotated[Transport, typer.Option(help="the wire to measure")] = Transport.ws,
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON")] = False,
) -> None:
    """Voice-to-voice and barge-in latency as a remote client sees them, over loopback in real time."""
    from parley.bench.live import run_live_bench

    report = asyncio.run(run_live_bench(progress=err.print, transport=transport.value))
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    table = Table(title=f"Live latency over {transport.value} (ms)")
    for column in ("measure", "p50", "p90"):
        table.add_column(column, justify="right" if column != "measure" else "left")
    table.add_row("voice-to-voice", _ms(report["v2v_p50_ms"]), _ms(report["v2v_p90_ms"]))
    table.add_row("barge-in", _ms(report["bargein_p50_ms"]), _ms(report["bargein_p90_ms"]))
    out.print(table)
    out.print(
        f"premature cut-ins: {report['premature_cutins']}, playout underruns: {report['playout_underruns']}"
    )


def bench_load(
    sessions: Annotated[int, typer.Option(help="concurrent sessions")] = 200,
    sweep: Annotated[
        str | None,
        typer.Option(
            help="comma-separated levels to step through, e.g. 50,100,150,200,250 (reports the knee)"
        ),
    ] = None,
    seconds: Annotated[float, typer.Option(help="measurement window per level")] = 20.0,
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON")] = False,
) -> None:
    """Parley's own overhead with N concurrent WebSocket sessions on fast deterministic engines."""
    from parley.bench.load import run_load

    try:
        levels = [int(x) for x in sweep.split(",")] if sweep else [sessions]
    except ValueError as exc:
        err.print(f"[red]error:[/red] --sweep takes comma-separated integers, got {shown(repr(sweep))}")
        raise typer.Exit(2) from exc
    report = _run_fast(run_load(levels, measure_s=seconds, progress=err.print))
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    table = Table(title="Load (server process)")
    columns = {
        "sessions": "sessions",
        "server_cpu_percent": "server CPU %",
        "cpu_ms_per_session_per_s": "CPU ms/s per session",
        "memory_mb_per_session": "MB per session",
        "client_underruns": "underruns (client)",
        "engine_underruns": "underruns (engine)",
        "frame_lateness_p99_ms": "lateness p99 ms",
        "other_processes_cpu_percent": "other processes CPU %",
    }
    for title in columns.values():
        table.add_column(title, justify="right")
    for level in report["levels"]:
        table.add_row(*(_cell(level[key]) for key in columns))
    out.print(table)
    out.print(f"knee: {report['knee_sessions']} sessions (highest level with no underruns and p99 < 20 ms)")


def _run_fast(main: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    """Hundreds of simulated clients: on uvloop when it is there, so the clients stay light."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def _ms(value: object) -> str:
    return "-" if value is None else f"{float(value):.0f}"  # type: ignore[arg-type]


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


if __name__ == "__main__":  # until parley/cli.py registers it: python -m parley.commands.serve
    typer.run(serve)
