#!/usr/bin/env bash
# On the GPU machine: bench/run-device.sh on several committed snapshots, one after
# the other in one call, so the commits before and after a change are measured on
# the same machine. Each snapshot (.dev/snap-COMMIT.tar.xz, written here by
# `bash bench/pack-device.sh snap REV...`) runs its own run-device.sh with an equal
# share of BENCH_BUDGET_S, into $OUT/COMMIT; $OUT/bench.jsonl holds all records.
#   carry: .gl .dev/bun.xz .dev/nm.tar.xz .dev/snap-*.tar.xz
#   BENCH_SHAPES=1b bash bench/run-commits.sh single kernels
set -uo pipefail
cd "$(dirname "$0")/.."
snaps=(.dev/snap-*.tar.xz)
[ -e "${snaps[0]}" ] || { echo "no .dev/snap-*.tar.xz: run bash bench/pack-device.sh snap REV... here and carry them" >&2; exit 2; }
OUT=${OUT:-$PWD/bench-out}
mkdir -p "$OUT"
each=$(( ${BENCH_BUDGET_S:-560} / ${#snaps[@]} ))
for s in "${snaps[@]}"; do
  c=$(basename "$s" .tar.xz)
  c=${c#snap-}
  snap=${TMPDIR:-/tmp}/kvc-snap-$c
  rm -rf "$snap" && mkdir -p "$snap" && tar -xJf "$s" -C "$snap"
  ln -sfn "$PWD/.dev" "$snap/.dev"
  ln -sfn "$PWD/.gl" "$snap/.gl"
  KVC_COMMIT=$c BENCH_BUDGET_S=$each OUT=$OUT/$c bash "$snap/bench/run-device.sh" "$@" >"$OUT/$c.tail" 2>&1
done
cat "$OUT"/*/bench.jsonl >"$OUT/bench.jsonl"
for s in "${snaps[@]}"; do c=$(basename "$s" .tar.xz); c=${c#snap-}; echo "== $c"; head -c 2000 "$OUT/$c/summary.json" 2>/dev/null; echo; done
