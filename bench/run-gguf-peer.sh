#!/usr/bin/env bash
# On the GPU host: kvc beside llama.cpp (CUDA) on random-weight GGUF files at the 1B and
# 8B shapes (bench/gguf-peer.ts), then the report (bench/report.ts) into $OUT. Needs what
# bench/pack-device.sh and bench/pack-llamacpp.sh carry (see pack-llamacpp.sh for the
# two calls). Arguments go to bench/gguf-peer.ts (e.g. --shapes 8b --quants q4_k_m).
set -uo pipefail
cd "$(dirname "$0")/.."
source bench/device-env.sh
OUT=${OUT:-$PWD/bench-out}
mkdir -p "$OUT"
lib=tools/llamacpp/node_modules/@node-llama-cpp/linux-x64-cuda/bins/linux-x64-cuda
[ -d tools/llamacpp/node_modules/node-llama-cpp ] || { [ -f .dev/llamacpp-js.tar.xz ] && tar -C tools/llamacpp -xJf .dev/llamacpp-js.tar.xz; }
[ -f $lib/libggml-cuda.so ] || { [ -f .dev/llamacpp-cuda.xz.ac ] && mkdir -p $lib && cat .dev/llamacpp-cuda.xz.* | xz -dc >$lib/libggml-cuda.so.part && mv $lib/libggml-cuda.so.part $lib/libggml-cuda.so; }
[ "${1:-}" = unpack ] && { ls -l $lib; exit 0; }
# CUDA 13 runtime and cuBLAS: the toolkit's, else PyTorch's wheels (/opt/torch/.venv)
for l in libcudart.so.13 libcublas.so.13 libcublasLt.so.13; do
  f=$(find /usr/local/cuda/ /usr/local/cuda*/ /opt/ -name "$l" 2>/dev/null | head -1)
  [ -n "$f" ] && export LD_LIBRARY_PATH=$(dirname "$f"):${LD_LIBRARY_PATH:-}
done
echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
timeout "${BENCH_BUDGET_S:-560}" bun bench/gguf-peer.ts --out "$OUT/bench.jsonl" "$@" 2>&1 | tee "$OUT/log.txt"
bun bench/report.ts --in "$OUT/bench.jsonl" --out "$OUT" >/dev/null 2>&1 || true
cat "$OUT/summary.json" 2>/dev/null
