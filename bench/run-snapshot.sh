#!/usr/bin/env bash
# On the GPU machine: runs bench/run-device.sh on the committed snapshot that
# bench/pack-device.sh wrote into .dev/clean.tar.xz (git archive HEAD), not on the
# working tree the call copied, so uncommitted work in progress stays out of the figures.
#   carry: .gl .dev/bun.xz .dev/nm.tar.xz .dev/commit .dev/clean.tar.xz
#   bash bench/run-snapshot.sh [SUITE...] [-- extra kvc bench flags]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -s .dev/clean.tar.xz ] || { echo "no .dev/clean.tar.xz: run bash bench/pack-device.sh commit here and carry it" >&2; exit 2; }
SNAP=${TMPDIR:-/tmp}/kvc-snapshot
rm -rf "$SNAP" && mkdir -p "$SNAP"
tar -xJf .dev/clean.tar.xz -C "$SNAP"
ln -sfn "$PWD/.dev" "$SNAP/.dev"
ln -sfn "$PWD/.gl" "$SNAP/.gl"
exec bash "$SNAP/bench/run-device.sh" "$@"
