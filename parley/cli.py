"""The ``parley`` command line (Typer)."""

from __future__ import annotations

import asyncio
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.core
from rich.console import Console
from rich.table import Table

from parley.bench.leads import bench_leads
from parley.commands.agents import agents_app
from parley.commands.api_keys import keys_app
from parley.commands.callbacks import businesses_page_link, leads_callback
from parley.commands.calls import calls_app
from parley.commands.documents import docs_app
from parley.commands.leads import businesses_app, leads_app
from parley.commands.mailbox import mailbox
from parley.commands.number_routing import numbers_app
from parley.commands.numbers import numbers_assign, numbers_unassign
from parley.commands.output import shown
from parley.commands.rooms import rooms_app
from parley.commands.serve import bench_live, bench_load, serve
from parley.commands.supervise import supervise_app
from parley.commands.twilio_sim import twilio_sim
from parley.engine.agent import AgentConfig, AgentConfigError, default_agent, load_agent
from parley.logs import configure_logging
from parley.store.db import DatabaseUnavailable

configure_logging()

err = Console(stderr=True, emoji=False)  # ":name:" in a transcript is text, not an emoji
out = Console(emoji=False)


class ParleyCommands(typer.core.TyperGroup):
    """The ``parley`` command group. A database that cannot be used (``PARLEY_DATABASE_URL`` that does not
    parse, a database that cannot be reached) is one error line naming the setting and exit 1, from
    whichever sub-command opened the store, never a traceback."""

    def invoke(self, ctx: Any) -> Any:  # Any: the Context of the click that typer vendors
        try:
            return super().invoke(ctx)
        except DatabaseUnavailable as exc:
            err.print(f"[red]error:[/red] {shown(str(exc), lines=True)}", soft_wrap=True)
            raise typer.Exit(1) from exc


app = typer.Typer(
    cls=ParleyCommands,
    help="Parley: real-time voice AI agents, fully offline.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
bench_app = typer.Typer(help="Benchmarks that print numbers.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
app.command()(serve)
app.command("twilio-sim")(twilio_sim)
app.command()(mailbox)
bench_app.command("live")(bench_live)
bench_app.command("load")(bench_load)
bench_app.command("leads")(bench_leads)
app.add_typer(agents_app, name="agents")
agents_app.add_typer(docs_app, name="docs")
app.add_typer(calls_app, name="calls")
app.add_typer(keys_app, name="keys")
app.add_typer(numbers_app, name="numbers")
numbers_app.command("assign")(numbers_assign)
numbers_app.command("unassign")(numbers_unassign)
app.add_typer(rooms_app, name="rooms")
app.add_typer(supervise_app, name="supervise")
app.add_typer(businesses_app, name="businesses")
app.add_typer(leads_app, name="leads")
leads_app.command("callback")(leads_callback)
businesses_app.command("page-link")(businesses_page_link)


class Transport(StrEnum):
    INPROCESS = "inprocess"
    TWILIO = "twilio"


def _agent(path: Path | None) -> AgentConfig:
    try:
        return load_agent(path) if path else default_agent()
    except AgentConfigError as exc:  # the file's own text may hold brackets or control characters
        err.print(f"[red]error:[/red] {shown(str(exc), lines=True)}")
        raise typer.Exit(2) from exc


@app.command()
def simulate(
    say: Annotated[
        list[Path] | None, typer.Option("--say", help="a WAV file per user turn (any rate/format)")
    ] = None,
    out_dir: Annotated[
        Path, typer.Option("--out", help="where conversation.wav, transcript.json and events.jsonl go")
    ] = Path("out/simulation"),
    agent: Annotated[
        Path | None, typer.Option("--agent", help="agent YAML (default: built-in assistant)")
    ] = None,
    barge_in_at: Annotated[
        float | None,
        typer.Option(
            "--barge-in-at", help="start each turn after the first this many ms into the agent's answer"
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    transport: Annotated[
        Transport,
        typer.Option(
            "--transport",
            help="inprocess: the session in this process; twilio: an inbound phone call to a Parley "
            "server through the local Twilio (Media Streams, μ-law 8 kHz)",
        ),
    ] = Transport.INPROCESS,
) -> None:
    """Play WAV files into a live session in real time, one per user turn, and record the call."""
    config = _agent(agent)
    for path in say or []:
        if not path.is_file():
            err.print(f"[red]error:[/red] no such WAV file: {shown(str(path))}")
            raise typer.Exit(2)
    try:
        if transport is Transport.TWILIO:
            from parley.bench.phone import run_phone_simulation

            summary = asyncio.run(run_phone_simulation(agent, say or [], out_dir, barge_in_at, progress=err))
        else:
            from parley.simulate import run_simulation

            summary = asyncio.run(run_simulation(config, say or [], out_dir, barge_in_at, progress=err))
    except ValueError as exc:
        err.print(f"[red]error:[/red] {shown(str(exc), lines=True)}")
        raise typer.Exit(2) from exc
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        return
    table = Table(title=f"Conversation ({out_dir})")
    for column in ("#", "user said", "agent said", "v2v ms"):
        table.add_column(column, overflow="fold")
    turns: list[dict[str, Any]] = summary["turns"]
    for i, turn in enumerate(turns, 1):
        agent_text = turn["agent_text"] + (" [interrupted]" if turn["interrupted"] else "")
        table.add_row(str(i), shown(turn["user_text"]), shown(agent_text), _ms(turn["v2v_ms"]))  # model text
    out.print(table)
    out.print(f"voice-to-voice p50 {_ms(summary['v2v_p50_ms'])} ms, p90 {_ms(summary['v2v_p90_ms'])} ms")


@bench_app.command("latency")
def bench_latency(
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON")] = False,
    agent: Annotated[
        Path | None, typer.Option("--agent", help="agent YAML (default: built-in assistant)")
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="also write the call (wav, events) here")
    ] = None,
    transport: Annotated[
        Transport,
        typer.Option(
            "--transport",
            help="inprocess: the session in this process; twilio: a phone call through the local Twilio, "
            "measured as the caller hears it",
        ),
    ] = Transport.INPROCESS,
    loss: Annotated[
        float, typer.Option("--loss", min=0.0, max=0.5, help="twilio: caller packets lost (0.05 = 5%)")
    ] = 0.0,
    jitter_ms: Annotated[
        float, typer.Option("--jitter-ms", min=0.0, max=500.0, help="twilio: caller network jitter")
    ] = 0.0,
) -> None:
    """Voice-to-voice and barge-in latency of the embedded stack, in real time."""
    if transport is Transport.TWILIO:
        from parley.bench.phone import run_phone_latency_bench

        _agent(agent)  # a bad file is reported here, not by the server process
        report = asyncio.run(
            run_phone_latency_bench(err.print, loss=loss, jitter_ms=jitter_ms, agent_path=agent)
        )
    else:
        if loss or jitter_ms:
            err.print("[red]error:[/red] --loss and --jitter-ms need --transport twilio")
            raise typer.Exit(2)
        from parley.bench.latency import run_latency_bench

        report = asyncio.run(run_latency_bench(_agent(agent), progress=err, out=out_dir))
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    table = Table(title="Latency (ms)")
    table.add_column("measure")
    table.add_column("p50", justify="right")
    table.add_column("p90", justify="right")
    table.add_row("voice-to-voice", _ms(report["v2v_p50_ms"]), _ms(report["v2v_p90_ms"]))
    table.add_row("barge-in", _ms(report["bargein_p50_ms"]), _ms(report["bargein_p90_ms"]))
    for name, figures in report.get("breakdown", {}).items():
        table.add_row(f"  {name}", _ms(figures["p50"]), _ms(figures["p90"]))
    out.print(table)
    out.print(f"premature cut-ins: {report['premature_cutins']}")
    if "greeting_ms" in report:
        out.print(f"greeting heard after {_ms(report['greeting_ms'])} ms; user WER {report['user_wer']:.1%}")


@bench_app.command("quality")
def bench_quality(
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON")] = False,
    text: Annotated[
        bool, typer.Option("--text", help="type the questions instead of speaking them (the LLM alone)")
    ] = False,
) -> None:
    """Task success of agents on scripted calls: facts, unknowns, tool calls with arguments, goodbyes."""
    from parley.bench.quality import run_quality_bench

    report = asyncio.run(run_quality_bench(err, text_only=text))
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    out.print(
        f"task success {report['task_success']:.0%} ({report['passed']} of {report['turns']} turns, "
        f"{report['agents']} agents, {report['seconds']:.0f} s)"
    )
    for kind, tally in report["by_expectation"].items():
        out.print(f"  {kind}: {tally['passed']} of {tally['turns']}")


@bench_app.command("wer")
def bench_wer(
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON")] = False,
    clips: Annotated[int, typer.Option("--clips", min=3, max=300, help="recorded clips to play")] = 18,
    seed: Annotated[int, typer.Option("--seed", help="which clips, and how they are levelled")] = 0,
) -> None:
    """Word errors through the engine (streaming) against one batch pass of the same recogniser, on real
    recorded speech."""
    from parley.bench.streaming_wer import RecordingsMissing, run_wer_bench

    try:
        report = asyncio.run(run_wer_bench(err.print, clips=clips, seed=seed))
    except RecordingsMissing as exc:
        err.print(f"[red]error:[/red] {shown(str(exc), lines=True)}")
        raise typer.Exit(2) from exc
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    ratio = "n/a" if report["ratio"] is None else f"{report['ratio']:.2f}x"
    out.print(
        f"{report['clips']} clips: streaming WER {report['streaming_wer']:.1%}, "
        f"batch WER {report['batch_wer']:.1%} ({ratio})"
    )
    for kind, figures in report["by_kind"].items():
        out.print(
            f"  {kind}: streaming {figures['streaming_wer']:.1%}, batch {figures['batch_wer']:.1%} "
            f"({figures['clips']} clips)"
        )


@bench_app.command("coach")
def bench_coach(
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON")] = False,
    llm: Annotated[
        bool, typer.Option("--llm/--no-llm", help="hints written by the LLM (else the triggers' own hints)")
    ] = True,
    in_process: Annotated[
        bool,
        typer.Option(
            "--in-process", help="legs fed inside this process (the baseline), not WebSocket legs to a server"
        ),
    ] = False,
) -> None:
    """The AI coach on scripted sales calls: hint latency, trigger precision and recall, whisper leak."""
    from parley.bench.coach import run_coach_bench

    report = asyncio.run(run_coach_bench(err.print, use_llm=llm, in_process=in_process))
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    leak = {True: "YES", False: "none", None: "not measured, no whisper played"}[report["whisper_leak"]]
    out.print(
        f"{report['legs']} legs: "
        f"hints p50 {_ms(report['hint_latency_p50_ms'])} ms, p90 {_ms(report['hint_latency_p90_ms'])} ms; "
        f"precision {report['precision']:.2f}, recall {report['recall']:.2f} "
        f"({report['fired_triggers']} fired, {report['expected_triggers']} expected, "
        f"{report['utterances']} utterances); whisper leak: {leak} "
        f"({report['whisper_leak_dbfs']} dBFS at the customer, "
        f"{report['whisper_to_rep_dbfs']} dBFS at the rep)"
    )


@bench_app.command("vad")
def bench_vad(
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON")] = False,
    seconds: Annotated[float, typer.Option("--seconds", help="audio to feed, in seconds")] = 10.0,
) -> None:
    """Silero VAD's cost per 32 ms frame on one thread (target: median under 3 ms)."""
    from parley.bench.vad import run_vad_bench

    report = run_vad_bench(seconds)
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    out.print(
        f"silero per-frame ({report['frame_ms']} ms of audio, {report['frames']} frames): "
        f"median {report['median_ms']} ms, p95 {report['p95_ms']} ms, max {report['max_ms']} ms "
        f"(target median < {report['target_median_ms']} ms: {'met' if report['within_target'] else 'MISSED'})"
    )


def _ms(value: object) -> str:
    return "-" if value is None else f"{float(value):.0f}"  # type: ignore[arg-type]


if __name__ == "__main__":
    app()
