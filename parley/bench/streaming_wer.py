"""``parley bench wer``: word errors of speech heard through the engine against one batch pass.

The recordings are real: Debian's ``asterisk-core-sounds-en-wav`` (a person, Allison Smith, reading
several hundred telephone prompts; CC BY-SA 3.0) with their transcripts from ``asterisk-core-sounds-en``.
``make setup`` installs both. Each clip is played in real time into a call on the embedded stack (VAD,
endpointing, turn policy, the agent answering, barge-in) and what the engine finalised is compared with
what the same recogniser makes of the whole clip in one pass. Three kinds of clip, each where streaming
has lost words before:

- ``natural``: one prompt of two or more sentences, as recorded (the speaker's own pauses);
- ``paused``: two or three prompts with a 0.9-2.2 s thinking pause between them, long enough that the
  agent may answer the first part before the caller goes on;
- ``quiet_onset``: the first 0.9 s of a prompt 24 dB down, as a caller who starts softly.

Levels vary by up to 14 dB and a -50 dBFS noise floor is added, as on a real line.
"""

from __future__ import annotations

import gzip
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from parley.audio.frame import PCM16, AudioFrame
from parley.audio.resample import resample
from parley.audio.wav import read_wav
from parley.bench.phone import word_error_rate
from parley.engine.agent import AgentConfig, default_agent
from parley.simulate import Conversation, UserTurn

SOUNDS_DIR = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
RATE = 16_000
KINDS = ("natural", "paused", "quiet_onset")
QUIET_SECONDS = 0.9
QUIET_DB = -24.0
NOISE_DBFS = -50.0


class RecordingsMissing(FileNotFoundError):
    """The Debian packages with the recordings are not installed."""


@dataclass(frozen=True, slots=True)
class Clip:
    kind: str
    text: str
    """What is said: the prompts' published transcripts."""
    pcm: PCM16
    """16 kHz."""


def read_transcripts(path: Path = TRANSCRIPTS, sounds: Path = SOUNDS_DIR) -> dict[str, str]:
    """Prompt name -> words, for prompts that are speech (not tones) and whose recording is installed.

    Editorial notes in the file ("(note: …)") are not said and are dropped."""
    if not path.is_file() or not sounds.is_dir():
        raise RecordingsMissing(
            f"no recordings at {sounds} (transcripts {path}): install the Debian packages "
            "asterisk-core-sounds-en-wav and asterisk-core-sounds-en (make setup does)"
        )
    prompts: dict[str, str] = {}
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as lines:
        for line in lines:
            name, sep, text = line.partition(":")
            if line.startswith(";") or not sep:
                continue
            name, text = name.strip(), re.sub(r"\(.*?\)", "", text).strip()
            if text and "[" not in text and (sounds / f"{name}.wav").is_file():
                prompts[name] = text
    return prompts


def build_clips(
    prompts: dict[str, str], load: Callable[[str], PCM16], count: int, seed: int = 0
) -> list[Clip]:
    """``count`` clips, the kinds in turn, chosen and levelled by ``seed`` (the same seed, the same clips)."""
    rng = random.Random(seed)
    noise = np.random.default_rng(seed)
    words = {name: len(text.split()) for name, text in prompts.items()}
    sentences = sorted(n for n, t in prompts.items() if words[n] >= 9 and "." in t.rstrip(". "))
    short = sorted(n for n in prompts if 4 <= words[n] <= 10)
    if not sentences or not short:
        raise RecordingsMissing("too few prompts with transcripts to build clips from")
    clips: list[Clip] = []
    for index in range(count):
        kind = KINDS[index % len(KINDS)]
        if kind == "natural":
            name = rng.choice(sentences)
            pcm, text = load(name).astype(np.float32), prompts[name]
        elif kind == "quiet_onset":
            name = rng.choice(short)
            pcm, text = load(name).astype(np.float32), prompts[name]
            voiced = np.nonzero(np.abs(pcm) > 300)[0]
            start = int(voiced[0]) if voiced.size else 0
            pcm[start : start + int(QUIET_SECONDS * RATE)] *= 10 ** (QUIET_DB / 20)
        else:
            names = [rng.choice(short) for _ in range(rng.choice((2, 3)))]
            parts: list[PCM16] = []
            for i, name in enumerate(names):
                if i:
                    parts.append(np.zeros(int(rng.uniform(0.9, 2.2) * RATE), np.int16))
                parts.append(load(name))
            pcm, text = np.concatenate(parts).astype(np.float32), " ".join(prompts[n] for n in names)
        pad = np.zeros(int(0.3 * RATE), np.float32)
        levelled = np.concatenate([pad, pcm, pad]) * 10 ** (-rng.uniform(0, 14) / 20)
        levelled += noise.normal(0.0, 32768 * 10 ** (NOISE_DBFS / 20), levelled.size)
        clips.append(Clip(kind, text, np.clip(np.round(levelled), -32768, 32767).astype(np.int16)))
    return clips


def load_recording(name: str, sounds: Path = SOUNDS_DIR) -> PCM16:
    frame = read_wav(sounds / f"{name}.wav")
    return resample(frame.pcm, frame.sample_rate, RATE) if frame.sample_rate != RATE else frame.pcm


def _figures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    refs = [r["reference"] for r in rows]
    batch = word_error_rate(refs, [r["batch"] for r in rows])
    streaming = word_error_rate(refs, [r["streaming"] for r in rows])
    return {
        "clips": len(rows),
        "batch_wer": round(batch, 4),
        "streaming_wer": round(streaming, 4),
        "ratio": round(streaming / batch, 2) if batch else None,
    }


async def run_wer_bench(
    say: Callable[[str], object], clips: int = 18, seed: int = 0, agent: AgentConfig | None = None
) -> dict[str, Any]:
    """Each clip in its own call, so what one call's agent did cannot change what the next one hears."""
    from parley.stack import prepare_stack

    started = time.monotonic()
    chosen = build_clips(read_transcripts(), load_recording, clips, seed)
    # Without tools: an agent that hangs up on a prompt it finds odd would end the measurement, not
    # the hearing.
    agent = (agent or default_agent()).model_copy(update={"tools": []})
    say(f"loading models for agent '{agent.name}' …")
    stack = await prepare_stack(agent)
    rows: list[dict[str, Any]] = []
    for index, clip in enumerate(chosen, 1):
        stream = stack.recognizer.open_stream()
        await stream.push(clip.pcm)
        batch = (await stream.finalize()).text
        await stream.aclose()
        result = await Conversation(agent, stack).run([UserTurn(AudioFrame(clip.pcm, RATE), text=clip.text)])
        heard = " ".join(turn.user_text for turn in result.turns).strip()
        row: dict[str, Any] = {"kind": clip.kind, "reference": clip.text, "batch": batch, "streaming": heard}
        row["batch_wer"] = round(word_error_rate([clip.text], [batch]), 3)
        row["streaming_wer"] = round(word_error_rate([clip.text], [heard]), 3)
        rows.append(row)
        say(
            f"{index}/{len(chosen)} {clip.kind}: "
            f"WER batch {row['batch_wer']:.2f}, streaming {row['streaming_wer']:.2f}"
        )
    report: dict[str, Any] = {
        "recordings": "asterisk-core-sounds-en (Allison Smith), real speech",
        "seed": seed,
        **_figures(rows),
        "by_kind": {kind: _figures([r for r in rows if r["kind"] == kind]) for kind in KINDS},
        "detail": rows,
        "seconds": round(time.monotonic() - started, 1),
    }
    return report


__all__ = ["Clip", "RecordingsMissing", "build_clips", "read_transcripts", "run_wer_bench"]
