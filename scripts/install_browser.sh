#!/usr/bin/env bash
# Headless Chromium for the voice page's end-to-end test (tests/web). Debian's package; no browser
# downloads from anywhere else. Safe to run again: does nothing when chromium is already there.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
  echo "install_browser: $(chromium --version 2>/dev/null || echo chromium) already installed"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q chromium
echo "install_browser: $(chromium --version)"
