#!/usr/bin/env bash
# Installs everything kvc needs on a fresh Debian bookworm machine: Mesa's software
# Vulkan (lavapipe, Mesa 25 from bookworm-backports; Mesa 22 makes Dawn fall back to
# a null backend), Debian's Chromium (the playground's browser test drives it with
# puppeteer-core), bun and deno from npm, the project's packages, llama.cpp's CPU
# build (tools/llamacpp) and the GGUF test fixtures.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

if ! dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null | grep -q '^2[5-9]'; then
  echo "deb http://deb.debian.org/debian bookworm-backports main" | $SUDO tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1 >/dev/null
fi
if ! command -v chromium >/dev/null; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
if ! command -v bun >/dev/null || [ "$(bun --version)" != "1.4.5" ]; then
  $SUDO npm install -g --no-audit --no-fund bun@1.4.5 >/dev/null 2>&1
fi
if ! command -v deno >/dev/null; then
  $SUDO npm install -g --no-audit --no-fund deno@2.9.6 >/dev/null 2>&1
fi
bun install --frozen-lockfile >/dev/null
# llama.cpp for the GGUF oracle tests: node-llama-cpp with its linux-x64 CPU build only
(cd tools/llamacpp && bun install --frozen-lockfile --omit=optional >/dev/null)
# the Python openai SDK for tests/server/openai-python.test.ts (skipped where python3 or the package is missing)
if command -v python3 >/dev/null; then
  python3 -m pip install -q openai >/dev/null 2>&1 || echo "setup: pip could not install openai; the Python SDK test will be skipped"
fi
# GGUF fixtures of the shared test models (derived weights: built here, never committed)
bun scripts/make-gguf-fixtures.ts >/dev/null
echo "setup: bun $(bun --version), $(deno --version | head -1), mesa-vulkan-drivers $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers), chromium $(dpkg-query -W -f='${Version}' chromium)"
