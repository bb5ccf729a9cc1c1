#!/usr/bin/env bash
# Tensor cores on the GPU machine, in one call: the adapter under each Bun backend, the
# tensor-core kernel tests, then GEMM TFLOP/s of every variant side by side, prefill
# tokens/s and batched decode with and without tensor cores (KVC_MMA_MIN_ROWS), all
# into $OUT (tc.jsonl, log.txt). Carry what bench/run-device.sh carries.
#   bash bench/run-tc.sh [STEP...]   STEP: adapter tests gemm prefill batch single golden,
#   and prim splitk breakdown attn quant qsweep qsingle (the subgroup-matrix primitives,
#   batched decode by split-K target and row threshold, a batched decode step's kernels,
#   tensor-core prefill attention on and off, quantized q4_k kernels and decode, every
#   quantized GEMV tile beside the 8-weight kernel and f16 (about 5 minutes), single-stream
#   quantized decode under each KVC_QGEMV of TC_QGEMV)   (default: the first seven)
set -uo pipefail
cd "$(dirname "$0")/.."
source bench/device-env.sh >/dev/null 2>&1
export KVC_COMMIT=${KVC_COMMIT:-$(cat .dev/commit 2>/dev/null || echo unknown)}
export KVC_GPU_NAME=${KVC_GPU_NAME:-$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)}
O=${OUT:-$PWD/bench-out}
mkdir -p "$O"
J=$O/tc.jsonl
steps=("$@"); [ ${#steps[@]} -gt 0 ] || steps=(adapter tests gemm prefill golden batch single)
has() { local x; for x in "${steps[@]}"; do [ "$x" = "$1" ] && return 0; done; return 1; }
log() { echo "== $(date -u +%T) $*"; }
{
  if has adapter; then
    for b in dawn.node bun-webgpu; do
      log "adapter $b"
      KVC_WEBGPU=$b timeout 60 bun -e 'import { createGpu, describeGpu } from "./src/gpu/device.ts";
const g = await createGpu(); console.log(describeGpu(g)); console.log(JSON.stringify({ limits: g.limits, sm: g.features.subgroupMatrix, sgmax: g.features.subgroupMaxSize }));' 2>&1 | grep -v '^Warning'
    done
  fi
  if has tests; then
    log "tensor-core tests"
    timeout 300 bun test --timeout 600000 tests/gpu/gemm-mma.test.ts tests/gpu/attention.test.ts -t "gemm_mma|tensor-core" 2>&1 | grep -v '^Warning' |
      grep -E '^\((pass|fail|skip)\)|Expected|Received|rror|^ *[0-9]+ (pass|fail|skip)' | grep -v 'pass) gemm_mma' | head -80
  fi
  if has prim; then
    log "subgroup-matrix primitives, tensor-core GEMM (split-K too) and attention tests"
    timeout 300 bun test --timeout 600000 tests/gpu/subgroup-matrix.test.ts tests/gpu/gemm-mma.test.ts tests/gpu/attention.test.ts -t "subgroup matrix|gemm_mma|split|tensor-core" 2>&1 | grep -v '^Warning' |
      grep -E '^\((pass|fail|skip)\)|Expected|Received|rror|worst|^ *[0-9]+ (pass|fail|skip)' | grep -v 'pass) gemm_mma mma' | head -80
    # TC_ATTN_CFGS: configurations separated by spaces, the variables of one joined by "+"
    for cfg in ${TC_ATTN_CFGS:-}; do
      log "tensor-core attention tests with $cfg"
      env ${cfg//+/ } timeout 120 bun test --timeout 600000 tests/gpu/attention.test.ts -t "tensor-core" 2>&1 | grep -E '^\((pass|fail)\)|Received|^ *[0-9]+ (pass|fail)' | head -20
    done
  fi
  if has splitk; then
    # TC_SPLITK: the configurations, separated by ";"
    IFS=';' read -ra cfgs <<<"${TC_SPLITK:-KVC_MMA_MIN_ROWS=1000000;KVC_MMA_MIN_ROWS=33 KVC_SPLITK_WGS=0;KVC_MMA_MIN_ROWS=8 KVC_SPLITK_WGS=512;KVC_MMA_MIN_ROWS=8 KVC_SPLITK_WGS=1024;KVC_MMA_MIN_ROWS=8 KVC_SPLITK_WGS=256}"
    for cfg in "${cfgs[@]}"; do
      log "batched decode $cfg"
      env $cfg timeout 90 bun cli/main.ts bench batch --shape 1b --batches ${TC_BATCHES:-8,16,32,64,128} --deadline-s 75 --out "$J" 2>&1 | grep -E 'tok_s|error' | cut -c1-300
    done
  fi
  if has breakdown; then
    log "decode step kernels at 16, 32 and 64 rows, tensor cores from 8 rows ${TC_BREAKDOWN_ENV:-}"
    env KVC_MMA_MIN_ROWS=8 ${TC_BREAKDOWN_ENV:-} timeout 120 bun cli/main.ts bench kernels --shape 1b --contexts 256 --gemv-rows 16,32,64 --prefill-rows 512 --prefill-attn-lens 512 --rank-lens 2048 --rank-batch 1 --passes 3 --copy-mib 64 --deadline-s 100 --out "$J" 2>&1 | grep -E '"test":"decode_step"|error' | cut -c1-900
  fi
  if has attn; then
    for a in 1 0; do
      log "prefill KVC_MMA_ATTN=$a"
      KVC_MMA_ATTN=$a timeout 150 bun cli/main.ts bench prefill --shape 1b,8b --prefill-lens 2048,6000 --deadline-s 130 --out "$J" 2>&1 | grep -E 'tok_s|error' | cut -c1-400
    done
  fi
  if has compress; then
    log "compression throughput experiment (a slice: ${TC_COMPRESS:---prompts 12 --rates 1,64})"
    timeout 200 bun cli/main.ts bench compress ${TC_COMPRESS:---prompts 12 --rates 1,64} --deadline-s 190 --out "$J" 2>&1 | grep -E 'ratio|tok_s|error' | cut -c1-400
  fi
  if has gemm; then
    log "gemm variants (prefill step, 512 and 2048 rows)"
    for P in 512; do
      timeout 200 bun cli/main.ts bench kernels --shape 8b,1b --contexts 256 --gemv-rows 1 --prefill-rows $P --prefill-attn-lens 512 --rank-lens 2048 --rank-batch 1 --passes 3 --copy-mib 64 --deadline-s 180 --out "$J" 2>&1 | grep -E '"test":"(gemm|prefill_step|adapter)"|error' | cut -c1-400
    done
  fi
  if has prefill; then
    for m in 33 1000000; do
      log "prefill KVC_MMA_MIN_ROWS=$m"
      KVC_MMA_MIN_ROWS=$m timeout 200 bun cli/main.ts bench prefill --shape 1b,8b --prefill-lens 2048,6000 --deadline-s 180 --out "$J" 2>&1 | grep -E 'tok_s|error' | cut -c1-400
    done
  fi
  if has batch; then
    for m in 8 16 32 1000000; do
      log "batched decode KVC_MMA_MIN_ROWS=$m"
      KVC_MMA_MIN_ROWS=$m timeout 150 bun cli/main.ts bench batch --shape 1b --batches 8,16,32,64,128 --deadline-s 130 --out "$J" 2>&1 | grep -E 'tok_s|error' | cut -c1-300
    done
  fi
  if has single; then
    for cfg in "KVC_WEBGPU=dawn.node" "KVC_WEBGPU=dawn.node KVC_F16=0" "KVC_WEBGPU=bun-webgpu"; do
      log "single stream $cfg"
      env $cfg timeout 120 bun cli/main.ts bench single --shape 1b,8b --deadline-s 100 --out "$J" 2>&1 | grep -E 'tok_s|error' | cut -c1-300
    done
  fi
  if has golden; then
    # kvc-nano from the tree with its golden.json from .dev/golden (kvc-small too where .dev/shared has it)
    sh=/tmp/kvc-shared; mkdir -p $sh/models/kvc-nano
    cp models/kvc-nano/* $sh/models/kvc-nano/ && cp .dev/golden/kvc-nano.json $sh/models/kvc-nano/golden.json
    models=kvc-nano; [ -d .dev/shared/models/kvc-small ] && { cp -r .dev/shared/models/kvc-small $sh/models/; models=kvc-nano,kvc-small; }
    for cfg in "KVC_MMA_MIN_ROWS=33" "KVC_MMA_MIN_ROWS=1" "KVC_MMA_MIN_ROWS=1 KVC_MMA_SKINNY=1" "KVC_MMA_MIN_ROWS=1 KVC_MMA_ATTN=1"; do
      log "golden tokens ($models) $cfg"
      env KVC_SHARED=$sh KVC_GOLDEN_MODELS=$models $cfg timeout 200 bun test --timeout 600000 tests/engine/golden.test.ts 2>&1 | grep -v '^Warning' | grep -E '^\(|pass$|fail$|rror|Expected|Received' | tail -30
    done
  fi
  if has quant; then
    log "quantized (q4_k) kernels and single-stream decode"
    timeout 150 bun cli/main.ts bench kernels single --shape 1b,8b --quant q4_k --contexts 1024 --gemv-rows 1,16 --prefill-rows 512 --prefill-attn-lens 512 --rank-lens 2048 --rank-batch 1 --passes 3 --deadline-s 140 --out "$J" 2>&1 | grep -E '"test":"(gemv|decode_step|single_decode|decode)"|rror|at ' | cut -c1-500 | head -40
  fi
  if has qsweep; then
    log "quantized (${TC_QUANT:-q4_k}) GEMV tiles side by side at ${TC_QROWS:-1} rows: piece tiles, the 8-weight kernel (old), f16 weights"
    timeout 400 bun cli/main.ts bench kernels --shape 1b,8b --quant ${TC_QUANT:-q4_k} --contexts 256 --gemv-rows 1 --gemv-tile-rows ${TC_QROWS:-1} --prefill-rows 64 --gemm-variants base --prefill-attn-lens 64 --rank-lens 256 --rank-batch 1 --passes 3 --copy-mib 256 --deadline-s 380 --out "$J" 2>&1 |
      grep -E '"test":"(gemv_tile|decode_step|read_kernel)"|rror' | sed -E 's/.*"shape":"([^"]*)".*"name":"([^"]*)".*"M":([0-9]+).*"tile":"([^"]*)".*"model_tile":(true|false).*"ms":([0-9.]+),"gbps":([0-9.]+).*/\1 \2 M=\3 \4 \5 \6 ms \7 GB\/s/' | cut -c1-300
  fi
  if has qsingle; then
    # TC_QGEMV: KVC_QGEMV values separated by ";" ("-": the planner's choice)
    IFS=';' read -ra qcfgs <<<"${TC_QGEMV:--;old;xq8=1}"
    for c in "${qcfgs[@]}"; do
      [ "$c" = "-" ] && c=""
      log "single-stream decode ${TC_QUANT:-q4_k} KVC_QGEMV=$c"
      KVC_QGEMV=$c timeout 100 bun cli/main.ts bench single --shape 1b,8b --quant ${TC_QUANT:-q4_k} --deadline-s 90 --out "$J" 2>&1 | grep -E 'tok_s|rror' | cut -c1-300
    done
  fi
} 2>&1 | tee -a "$O/log.txt" | grep -v "\"test\":\"gemm\"" | cut -c1-260
# one archive: a device call brings back only a few files
tar -C "$O" -czf "$O/tc-out.tgz" --exclude=tc-out.tgz . 2>/dev/null || true
