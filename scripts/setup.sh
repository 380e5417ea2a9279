#!/usr/bin/env bash
# Set up nasc on a fresh Debian machine: system tools (as root, or through sudo) and a venv in .venv.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  g++-aarch64-linux-gnu   # cross compiler for aarch64 devices (Raspberry Pi 4, Jetson)
  qemu-user-static binfmt-support debootstrap  # the emulated Raspberry Pi
  lrzsz socat             # YMODEM peer and pseudo-terminal pairs for the serial tests
  dataset-fashion-mnist   # Fashion-MNIST idx files (--data fashion-mnist)
  chromium chromium-driver  # the report's headless-browser test (selenium)
  file ca-certificates
)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch==2.13.0 is pinned in pyproject.toml: pip takes the CPU wheel; never a CUDA build.
.venv/bin/python -m pip install -q -e '.[dev]'
echo "setup: done (.venv/bin/nasc --help)"
