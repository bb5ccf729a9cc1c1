#!/usr/bin/env bash
# One command on the GPU machine: unpack the carried runtimes (bench/device-env.sh), run
# the chosen benchmark suites under Bun (decode and kernels under Deno too, when its
# binary came along), the PyTorch/transformers baseline, then write the report into
# $OUT: bench.jsonl (every record), log.txt, results.md, results.json, summary.json and
# throughput-vs-rate.svg. Every step runs under `timeout` inside one budget
# (BENCH_BUDGET_S, default 560 s of a 600 s device command), and kvc bench prints each
# figure the moment it exists, so a step cut short still leaves its data.
#
#   bash bench/run-device.sh [SUITE...] [-- extra kvc bench flags]
#   SUITE: kernels | decode | single | hf | overhead | compress | prefix | deno | quick | all (default: all)
#     kernels   GEMV / attention / copy GB/s, GEMM TFLOP/s (Bun; Deno too in "deno")
#     decode    single stream, prefill + TTFT, batched decode sweep (Bun; then Deno if present)
#     single    single-stream decode only (Bun)
#     hf        bench/hf_baseline.py: eager and static-cache + torch.compile, batch 1 and 32
#     ort       onnxruntime-web's WebGPU backend (bench/ort/ort-bench.ts) through bun-webgpu,
#               then through dawn.node, kvc's Dawn (needs .dev/ort.tar.xz: bench/ort/pack.sh)
#     ort-node  the same graph on onnxruntime-node's WebGPU provider (needs .dev/ort-node.tar.xz:
#               bench/ort/pack.sh node; not part of "all")
#     overhead  compression pass cost at interval 16
#     compress  the KV-Compress throughput experiment (COMPRESS_ARGS scales it)
#     prefix    prefix caching: TTFT with a 2000-token prefix sent before, cold vs warm, 1B
#               (PREFIX_ARGS, e.g. "--prefix-shape 8b"; not part of "all")
#     deno      decode and kernels under Deno only
#     quick     a one-minute check that the machine, both runtimes and the harness work
#   Knobs (environment): BENCH_BUDGET_S, BENCH_SHAPES (1b,8b), KERNEL_ARGS, DECODE_ARGS,
#     HF_ARGS, ORT_ARGS, OVERHEAD_ARGS, COMPRESS_ARGS, PREFIX_ARGS (e.g. "--prompts 32 --rates 1,4,16,64"),
#     KVC_COMMIT (else .dev/commit, written by bench/pack-device.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
START=$(date +%s)
BUDGET=${BENCH_BUDGET_S:-560}
OUT=${OUT:-$ROOT/bench-out}
mkdir -p "$OUT"
LOG=$OUT/log.txt
JSONL=$OUT/bench.jsonl
: >"$JSONL"
: >"$LOG"

suites=()
extra=()
while [ $# -gt 0 ]; do
  if [ "$1" = "--" ]; then shift; extra=("$@"); break; fi
  suites+=("$1"); shift
done
[ ${#suites[@]} -gt 0 ] || suites=(all)
for s in "${suites[@]}"; do
  case "$s" in kernels|decode|single|hf|ort|ort-node|overhead|compress|prefix|deno|quick|all) ;; *) echo "unknown suite $s" >&2; exit 2 ;; esac
done
has() { local x; for x in "${suites[@]}"; do [ "$x" = "$1" ] || [ "$x" = all ] && return 0; done; return 1; }
only() { local x; for x in "${suites[@]}"; do [ "$x" = "$1" ] && return 0; done; return 1; }

# shellcheck source=bench/device-env.sh
source bench/device-env.sh >>"$LOG" 2>&1
export KVC_COMMIT=${KVC_COMMIT:-$(cat .dev/commit 2>/dev/null || echo unknown)}
export PYTHONUNBUFFERED=1
# Dawn names an NVIDIA adapter by its driver version: records name the GPU from nvidia-smi
export KVC_GPU_NAME=${KVC_GPU_NAME:-$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)}
SHAPES=${BENCH_SHAPES:-1b,8b}
HAVE_BUN=0; command -v bun >/dev/null && [ -d node_modules/bun-webgpu ] && HAVE_BUN=1
HAVE_DENO=0; command -v deno >/dev/null && HAVE_DENO=1
HAVE_ORT=0; [ $HAVE_BUN = 1 ] && [ -d node_modules/onnxruntime-web ] && HAVE_ORT=1
HAVE_ORT_NODE=0; [ $HAVE_BUN = 1 ] && [ -d node_modules/onnxruntime-node ] && HAVE_ORT_NODE=1
{
  echo "== $(date -u +%FT%TZ) commit $KVC_COMMIT suites: ${suites[*]} budget ${BUDGET}s"
  echo "bun: $( [ $HAVE_BUN = 1 ] && bun --version || echo absent)  deno: $( [ $HAVE_DENO = 1 ] && deno --version | head -1 || echo absent)"
  nvidia-smi --query-gpu=name,memory.total,clocks.max.memory,driver_version --format=csv 2>&1 | head -3
  ldconfig -p | grep -m1 libvulkan || echo "no libvulkan: carry .gl (bench/pack-device.sh)"
  echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-unset}"
} >>"$LOG" 2>&1

left() { echo $((BUDGET - ($(date +%s) - START))); }
RESERVE=15 # seconds kept for the report at the end

# step NAME MAX_SECONDS CMD... : runs CMD under timeout within what is left of the budget.
# kvc bench and hf_baseline.py get a deadline a little under their timeout, so they stop
# starting work they cannot finish; kvc bench also gets the flags after "--".
step() {
  local name=$1 max=$2; shift 2
  local t; t=$(left); t=$((t - RESERVE)); [ "$t" -gt "$max" ] && t=$max
  if [ "$t" -lt 20 ]; then
    echo "== skip $name: ${t}s left" >>"$LOG"
    echo "{\"suite\":\"$name\",\"test\":\"skipped\",\"runtime\":\"shell\",\"commit\":\"$KVC_COMMIT\",\"reason\":\"budget\"}" >>"$JSONL"
    return
  fi
  local args=("$@")
  case " $* " in
    *" cli/main.ts bench "*) args+=("${extra[@]}" --deadline-s $((t - 8))) ;;
    *"hf_baseline.py"*) args+=(--deadline-s $((t - 10))) ;;
    *"bench/ort/ort-bench.ts"*) args+=(--deadline-s $((t - 8))) ;;
  esac
  echo "== $name (limit ${t}s): ${args[*]}" >>"$LOG"
  local t0; t0=$(date +%s)
  timeout -k 5 "$t" "${args[@]}" >>"$JSONL" 2>>"$LOG"
  echo "== $name: exit $? after $(( $(date +%s) - t0 ))s" >>"$LOG"
}
BUN=(bun cli/main.ts bench)
DENO=(deno run -A cli/main.ts bench)
# the *_ARGS knobs are word-split on purpose
# shellcheck disable=SC2086
{
  if only quick; then
    [ $HAVE_BUN = 1 ] && step quick-bun 120 "${BUN[@]}" kernels single --shape 1b --contexts 1024 --gemv-rows 1 --passes 2 --tokens 64 --prefill-lens 128
    [ $HAVE_DENO = 1 ] && step quick-deno 90 "${DENO[@]}" single --shape 1b --tokens 64
    step quick-hf 120 python3 bench/hf_baseline.py --shapes 1b --batches 1 --modes eager --new-tokens 32
  fi
  if [ $HAVE_BUN = 1 ] && ! only deno; then
    has kernels && step kernels 150 "${BUN[@]}" kernels --shape "$SHAPES" ${KERNEL_ARGS:-}
    has decode && step decode 220 "${BUN[@]}" e2e --shape "$SHAPES" ${DECODE_ARGS:-}
    only single && step single 120 "${BUN[@]}" single --shape "$SHAPES" ${DECODE_ARGS:-}
  fi
  if [ $HAVE_DENO = 1 ] && { has decode || only deno; }; then
    step decode-deno 200 "${DENO[@]}" e2e --shape "$SHAPES" --batches 1,8,32,128 ${DECODE_ARGS:-}
  fi
  has hf && ! only deno && step hf 240 python3 bench/hf_baseline.py --shapes "$SHAPES" ${HF_ARGS:-}
  if has ort && ! only deno; then
    if [ $HAVE_ORT = 1 ]; then
      # bun-webgpu first (on NVIDIA it offers no shader-f16, and the record says what
      # onnxruntime answers), then dawn.node, the Dawn kvc runs on, with f16 enabled
      step ort-bun-webgpu 120 bun bench/ort/ort-bench.ts --shape "$SHAPES" --gpu bun-webgpu ${ORT_ARGS:-}
      step ort-dawn-node 240 bun bench/ort/ort-bench.ts --shape "$SHAPES" --gpu dawn-node ${ORT_ARGS:-}
    elif only ort; then
      echo "ort: onnxruntime-web is not here: carry .dev/ort.tar.xz (bash bench/ort/pack.sh)" >>"$LOG"
    fi
  fi
  if only ort-node; then
    if [ $HAVE_ORT_NODE = 1 ]; then
      step ort-node 300 bun bench/ort/ort-bench.ts --shape "$SHAPES" --gpu ort-node ${ORT_ARGS:-}
    else
      echo "ort-node: onnxruntime-node is not here: carry .dev/ort-node.tar.xz (bash bench/ort/pack.sh node)" >>"$LOG"
    fi
  fi
  if [ $HAVE_BUN = 1 ] && ! only deno; then
    has overhead && step overhead 90 "${BUN[@]}" overhead ${OVERHEAD_ARGS:-}
    # the experiment at full size (128 x 6000 tokens, 7 rates) takes far longer than one
    # device command: by default a slice that fits, scaled with COMPRESS_ARGS
    has compress && step compress 540 "${BUN[@]}" compress ${COMPRESS_ARGS:---prompts 24 --rates 1,4,16,64}
    only prefix && step prefix 240 "${BUN[@]}" prefix ${PREFIX_ARGS:-}
  fi
  if [ $HAVE_DENO = 1 ] && only deno; then
    step kernels-deno 150 "${DENO[@]}" kernels --shape "$SHAPES" ${KERNEL_ARGS:-}
  fi
  [ $HAVE_BUN = 0 ] && [ $HAVE_DENO = 0 ] && echo "neither bun nor deno: carry .dev/bun.xz or .dev/deno.xz and .dev/nm.tar.xz" >>"$LOG"
}

# the report: bun if it is here, else deno (both run bench/report.ts)
rep=(bun bench/report.ts)
[ $HAVE_BUN = 1 ] || rep=(deno run -A bench/report.ts)
if command -v "${rep[0]}" >/dev/null; then
  timeout 60 "${rep[@]}" --in "$JSONL" --out "$OUT" >"$OUT/summary.line" 2>>"$LOG" && rm -f "$OUT/summary.line"
fi
echo "== done in $(( $(date +%s) - START ))s" >>"$LOG"
# the tail of the output is what a device call shows first: the headline and the tables
[ -f "$OUT/summary.json" ] && cat "$OUT/summary.json"
[ -f "$OUT/results.md" ] && sed -n '/^## Kernels/,$p' "$OUT/results.md" | head -150
tail -5 "$LOG"
