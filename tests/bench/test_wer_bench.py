"""``parley bench wer``: its clips are what it says they are, and streaming through the engine hears real
recorded speech as well as one batch pass of the same recogniser does."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from parley.audio.frame import PCM16
from parley.bench.streaming_wer import (
    KINDS,
    QUIET_SECONDS,
    RATE,
    RecordingsMissing,
    build_clips,
    read_transcripts,
    run_wer_bench,
)


def _dbfs(pcm: PCM16) -> float:
    rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))
    return 20 * np.log10(max(rms, 1e-9) / 32768)


def _prompts() -> dict[str, str]:
    return {f"p{i}": " ".join(["word"] * (5 + i % 6)) + ". And more words here." for i in range(12)}


def _load(name: str) -> PCM16:
    rng = np.random.default_rng(int(name[1:]))
    return (rng.standard_normal(int(1.5 * RATE)) * 6000).astype(np.int16)


def test_the_transcripts_leave_out_notes_tones_and_missing_recordings(tmp_path: Path) -> None:
    sounds = tmp_path / "sounds"
    sounds.mkdir()
    for name in ("welcome", "beep", "noted"):
        (sounds / f"{name}.wav").write_bytes(b"")
    listing = tmp_path / "core-sounds-en.txt.gz"
    with gzip.open(listing, "wt", encoding="utf-8") as out:
        out.write("; Core Asterisk Sounds in English\n\n")
        out.write("welcome: Welcome to the system.\n")
        out.write("beep: [this is a simple beep tone]\n")
        out.write("noted: IAX (note: does not say 2)\n")
        out.write("absent: This one has no recording.\n")
    assert read_transcripts(listing, sounds) == {"welcome": "Welcome to the system.", "noted": "IAX"}
    with pytest.raises(RecordingsMissing, match="asterisk-core-sounds-en"):
        read_transcripts(tmp_path / "nothing.txt.gz", sounds)


def test_clips_are_of_every_kind_and_the_same_for_a_seed() -> None:
    clips = build_clips(_prompts(), _load, 6, seed=3)
    assert [c.kind for c in clips] == [*KINDS, *KINDS]
    again = build_clips(_prompts(), _load, 6, seed=3)
    assert all(np.array_equal(a.pcm, b.pcm) and a.text == b.text for a, b in zip(clips, again, strict=True))
    other = build_clips(_prompts(), _load, 6, seed=4)
    assert not all(np.array_equal(a.pcm, b.pcm) for a, b in zip(clips, other, strict=True))


def test_a_paused_clip_holds_a_thinking_pause_and_a_quiet_one_starts_softly() -> None:
    clips = build_clips(_prompts(), _load, 3, seed=1)
    paused = next(c for c in clips if c.kind == "paused")
    window = int(0.1 * RATE)
    levels = [_dbfs(paused.pcm[i : i + window]) for i in range(0, paused.pcm.size - window, window)]
    quiet_run = longest = 0
    for level in levels:
        quiet_run = quiet_run + 1 if level < -45 else 0
        longest = max(longest, quiet_run)
    assert longest * 0.1 >= 0.8, "a pause of the line's noise alone between the prompts"
    assert len(paused.text.split(".")) >= 3, "two or three prompts' words"

    quiet = next(c for c in clips if c.kind == "quiet_onset")
    start = int(0.3 * RATE)  # after the lead-in pad
    soft = quiet.pcm[start : start + int(QUIET_SECONDS * RATE)]
    loud = quiet.pcm[start + int(QUIET_SECONDS * RATE) : start + int(1.4 * RATE)]
    assert _dbfs(loud) - _dbfs(soft) >= 20


@pytest.mark.models
async def test_streaming_hears_real_speech_as_well_as_a_batch_pass() -> None:
    """One clip of each kind from the real recordings, each in a call on the embedded stack."""
    report = await run_wer_bench(lambda _: None, clips=3, seed=0)
    assert report["clips"] == 3 and {row["kind"] for row in report["detail"]} == set(KINDS)
    for row in report["detail"]:
        assert row["streaming"], f"the engine heard nothing of {row['reference']!r}"
    # Whisper tiny on one clip per kind: a word or two either way is noise, losing a phrase is not.
    assert report["streaming_wer"] <= report["batch_wer"] + 0.12, report["detail"]
