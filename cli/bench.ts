// `kvc bench`: benchmark suites on synthetic random-weight models at real shapes
// (bench/*.ts). Every figure is printed as one JSON line the moment it exists.
import { parseArgs } from "node:util";
import { createGpu, describeGpu } from "../src/gpu/device.ts";
import { Deadline, parseList, Reporter, sourceDigest, type BenchContext } from "../bench/common.ts";
import { KERNEL_DEFAULTS, kernelSuite } from "../bench/kernels.ts";
import { E2E_DEFAULTS, e2eSuite } from "../bench/e2e.ts";
import { samplingSuite } from "../bench/sampling.ts";
import { anyGemmVariant, GEMM_DEFAULT, GEMM_SMALL, GEMM_SMALL_ROWS } from "../src/model/gemm.ts";
import { ON_LOAD_QUANTS, type OnLoadQuant } from "../src/model/quantize-weights.ts";
import { COMPRESS_DEFAULTS, compressSuite, OVERHEAD_DEFAULTS, overheadSuite } from "../bench/compress.ts";
import { ALLOCATIONS, METHOD_NAMES, type Allocation, type CompressionMethod } from "../src/cache/compression.ts";
import { PREFIX_DEFAULTS, prefixSuite } from "../bench/prefix.ts";

const K = KERNEL_DEFAULTS, E = E2E_DEFAULTS, C = COMPRESS_DEFAULTS, O = OVERHEAD_DEFAULTS, P = PREFIX_DEFAULTS;
const list = (xs: number[]) => xs.join(",");

export const BENCH_HELP = `kvc bench SUITE... [options]   (synthetic models: random f16 weights built on the GPU)

suites:
  kernels    GB/s of each decode GEMV, paged decode attention per context, copy ceiling; prefill GEMM TFLOP/s
  e2e        single-stream decode, prefill + TTFT, batched decode (= single prefill batch)
  single | prefill | batch   one part of e2e
  compress   KV-Compress throughput experiment: tokens/s per compression rate
  overhead   compression pass cost against decode step time
  prefix     time to first token with a long prefix sent before (prefix caching; cache_prefix) against without
  all        kernels e2e overhead compress

common:
  --shape S[,S]          tiny | 1b | 8b | llama-3.2-1b | llama-3.1-8b (kernels, e2e; default 1b,8b)
  --out FILE             also append every JSON line to FILE
  --deadline-s N         start no measurement that cannot finish within N seconds of the start
  --seed N               weights and prompts (default 1)
  --lookahead N          decode steps per readback (default: the engine's, 4 Bun / 16 Deno)
  --max-binding-mib N    cap storage bindings (forces weight shards)
  --quant T              quantize the random weights on the GPU: q8_0 | q4_0 | q4_k (records carry "quant";
                         the headline figures stay f16's)
  Generation always ignores EOS: output lengths are fixed.

kernels:
  --contexts L,...       decode attention contexts (default ${list(K.contexts)}; shrunk to what the KV pool holds)
  --gemv-rows M,...      decode batch sizes for the GEMV figures (default ${list(K.gemvRows)})
  --gemv-tile-rows M,... decode batch sizes at which every GEMV tile is timed side by side (default none)
  --attn-sweep-contexts L,...  contexts at which every decode attention layout and split target is timed
                         side by side (default none)
  --prefill-rows N       rows of the prefill step for GEMM figures (default ${K.prefillRows})
  --gemm-variants V,...  GEMM variants timed side by side on that step (default ${K.gemmVariants.join(",")};
                         the model runs KVC_GEMM, else ${GEMM_SMALL} up to ${GEMM_SMALL_ROWS} rows, ${GEMM_DEFAULT} past)
  --prefill-attn-lens L,...  prompt lengths for prefill attention, tiled kernel beside attention.wgsl: all rows
                         in one step, and the last --prefill-rows chunk (default ${list(K.prefillAttnLens)})
  --prefill-attn-tiles   also every tiling of the prefill attention kernel on those steps, side by side
  --rank-batch N --rank-lens L,...  one kv_rank pass over N sequences at L keys per head, each path
                         side by side (default ${K.rankBatch}; ${list(K.rankLens)})
  --copy-mib N           copy-ceiling buffer size (default ${K.copyBytes / 2 ** 20}, capped by the binding limit)
  --min-pass-ms N        shortest timed pass (default ${K.minPassMs})   --passes N  timed passes (default ${K.passes})

e2e:
  --prompt-len N --tokens N          single stream (default ${E.promptLen}, ${E.tokens})
  --prefill-lens L,...               prefill / TTFT prompt lengths (default ${list(E.prefillLens)})
  --batches B,...                    batched decode sizes (default ${list(E.batches)})
  --batch-prompt-len N --batch-tokens N   (default ${E.batchPromptLen}, ${E.batchTokens})

compress:
  --compress-shape S     (default ${C.shape})
  --prompts N --compress-prompt-len N --output-len N   (default ${C.prompts}, ${C.promptLen}, ${C.outputLen})
  --rates R,...          (default ${list(C.rates)}); rate 1 runs uncompressed unless --rate1 kvcompress
  --kv-seqs N            KV budget in uncompressed sequences of prompt + output tokens (default ${C.kvSeqs})
  --interval N           decode steps between compressions (default ${C.interval})

overhead:
  --overhead-batch N --overhead-prompt-len N --overhead-output-len N --overhead-rate R
                         (default ${O.batch}, ${O.promptLen}, ${O.outputLen}, ${O.rate}; interval from --interval)
  --overhead-allocation A  kvcompress budget split: ${ALLOCATIONS.join(" | ")} (default ${O.allocation})

prefix:
  --prefix-shape S       (default ${P.shape})
  --prefix-len N --prefix-suffix N   shared prefix tokens, then tokens of each request's own (default ${P.prefixLen}, ${P.suffixLen})
  --prefix-repeats N     cold/warm pairs, each on a fresh prefix; medians reported (default ${P.repeats})
  --prefix-method M --prefix-rate R  the cache_prefix mode's compression (default ${P.method} ${P.rate}; rate 0: skip it)

sampling:
  the batch decode four ways (plain, logprobs with 20 alternatives, a constraint allowing every
  token, both) at --batches (default 1,32), --batch-prompt-len, --batch-tokens: tokens/s each
`;

const SUITES = ["kernels", "e2e", "single", "prefill", "batch", "compress", "overhead", "sampling", "prefix", "all"];

function quantFlag(v: string): OnLoadQuant {
  if (!(ON_LOAD_QUANTS as readonly string[]).includes(v)) throw new Error(`--quant must be one of ${ON_LOAD_QUANTS.join(", ")} (got "${v}")`);
  return v as OnLoadQuant;
}

function int(v: string | undefined, name: string, def: number, min = 1): number {
  if (v === undefined) return def;
  const x = Number(v);
  if (!Number.isInteger(x) || x < min) throw new Error(`--${name} must be an integer >= ${min} (got "${v}")`);
  return x;
}

export async function benchCommand(argv: string[]): Promise<number> {
  const { values: a, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      shape: { type: "string" }, out: { type: "string" }, "deadline-s": { type: "string" }, seed: { type: "string" },
      lookahead: { type: "string" }, "max-binding-mib": { type: "string" }, quant: { type: "string" }, "ignore-eos": { type: "boolean" },
      contexts: { type: "string" }, "gemv-rows": { type: "string" }, "gemv-tile-rows": { type: "string" }, "attn-sweep-contexts": { type: "string" }, "prefill-rows": { type: "string" }, "prefill-attn-lens": { type: "string" }, "prefill-attn-tiles": { type: "boolean" }, "rank-batch": { type: "string" }, "rank-lens": { type: "string" }, "gemm-variants": { type: "string" }, "copy-mib": { type: "string" },
      "min-pass-ms": { type: "string" }, passes: { type: "string" },
      "prompt-len": { type: "string" }, tokens: { type: "string" }, "prefill-lens": { type: "string" }, batches: { type: "string" },
      "batch-prompt-len": { type: "string" }, "batch-tokens": { type: "string" },
      "compress-shape": { type: "string" }, prompts: { type: "string" }, "compress-prompt-len": { type: "string" }, "output-len": { type: "string" },
      rates: { type: "string" }, "kv-seqs": { type: "string" }, interval: { type: "string" }, rate1: { type: "string" },
      "prefix-shape": { type: "string" }, "prefix-len": { type: "string" }, "prefix-suffix": { type: "string" }, "prefix-repeats": { type: "string" }, "prefix-method": { type: "string" }, "prefix-rate": { type: "string" },
      "overhead-batch": { type: "string" }, "overhead-prompt-len": { type: "string" }, "overhead-output-len": { type: "string" }, "overhead-rate": { type: "string" }, "overhead-allocation": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (a.help || !positionals.length) {
    console.log(BENCH_HELP);
    return 0;
  }
  for (const p of positionals) if (!SUITES.includes(p)) throw new Error(`unknown bench suite "${p}"; suites: ${SUITES.join(", ")}`);
  let suites = positionals.includes("all") ? ["kernels", "e2e", "overhead", "compress"] : positionals;
  if (suites.includes("e2e")) suites = suites.filter((s) => !["single", "prefill", "batch"].includes(s));
  if (a.rate1 !== undefined && a.rate1 !== "none" && a.rate1 !== "kvcompress") throw new Error(`--rate1 must be none or kvcompress`);

  const rep = new Reporter(a.out ?? null);
  const ctx: BenchContext = {
    rep,
    deadline: new Deadline(a["deadline-s"] !== undefined ? int(a["deadline-s"], "deadline-s", 1) : null),
    seed: int(a.seed, "seed", 1),
    lookahead: a.lookahead !== undefined ? int(a.lookahead, "lookahead", 1) : undefined,
    maxBindingBytes: a["max-binding-mib"] !== undefined ? int(a["max-binding-mib"], "max-binding-mib", 1) * 2 ** 20 : undefined,
    quant: a.quant === undefined ? undefined : quantFlag(a.quant),
  };
  const shapes = (a.shape ?? "1b,8b").split(",").map((s) => s.trim()).filter(Boolean);
  const kernels = {
    contexts: parseList(a.contexts, K.contexts, "contexts"),
    gemvRows: parseList(a["gemv-rows"], K.gemvRows, "gemv-rows"),
    gemvTileRows: parseList(a["gemv-tile-rows"], K.gemvTileRows, "gemv-tile-rows"),
    attnSweepContexts: parseList(a["attn-sweep-contexts"], K.attnSweepContexts, "attn-sweep-contexts"),
    prefillRows: int(a["prefill-rows"], "prefill-rows", K.prefillRows, 17),
    prefillAttnLens: parseList(a["prefill-attn-lens"], K.prefillAttnLens, "prefill-attn-lens").map(Math.floor),
    prefillAttnTiles: a["prefill-attn-tiles"] ?? K.prefillAttnTiles,
    rankBatch: int(a["rank-batch"], "rank-batch", K.rankBatch),
    rankLens: parseList(a["rank-lens"], K.rankLens, "rank-lens").map(Math.floor),
    gemmVariants: a["gemm-variants"] !== undefined ? a["gemm-variants"].split(",").map((s) => anyGemmVariant(s.trim())) : K.gemmVariants,
    copyBytes: int(a["copy-mib"], "copy-mib", K.copyBytes / 2 ** 20) * 2 ** 20,
    minPassMs: int(a["min-pass-ms"], "min-pass-ms", K.minPassMs),
    passes: int(a.passes, "passes", K.passes),
  };
  const e2e = {
    promptLen: int(a["prompt-len"], "prompt-len", E.promptLen),
    tokens: int(a.tokens, "tokens", E.tokens, 2),
    prefillLens: parseList(a["prefill-lens"], E.prefillLens, "prefill-lens"),
    batches: parseList(a.batches, E.batches, "batches"),
    batchPromptLen: int(a["batch-prompt-len"], "batch-prompt-len", E.batchPromptLen),
    batchTokens: int(a["batch-tokens"], "batch-tokens", E.batchTokens, 2),
  };
  const interval = int(a.interval, "interval", C.interval);
  const compress = {
    shape: a["compress-shape"] ?? C.shape,
    prompts: int(a.prompts, "prompts", C.prompts),
    promptLen: int(a["compress-prompt-len"], "compress-prompt-len", C.promptLen),
    outputLen: int(a["output-len"], "output-len", C.outputLen, 2),
    rates: parseList(a.rates, C.rates, "rates"),
    kvSeqs: int(a["kv-seqs"], "kv-seqs", C.kvSeqs),
    interval,
    rate1: (a.rate1 ?? C.rate1) as "none" | "kvcompress",
  };
  const overhead = {
    shape: a["compress-shape"] ?? O.shape,
    batch: int(a["overhead-batch"], "overhead-batch", O.batch),
    promptLen: int(a["overhead-prompt-len"], "overhead-prompt-len", O.promptLen),
    outputLen: int(a["overhead-output-len"], "overhead-output-len", O.outputLen, 2),
    rate: Number(a["overhead-rate"] ?? O.rate),
    interval,
    allocation: (a["overhead-allocation"] ?? O.allocation) as Allocation,
  };
  if (!(ALLOCATIONS as readonly string[]).includes(overhead.allocation)) throw new Error(`--overhead-allocation must be one of ${ALLOCATIONS.join(", ")}`);
  if (compress.rates.some((r) => r < 1) || !(overhead.rate >= 1)) throw new Error("compression rates must be >= 1");
  const prefix = {
    shape: a["prefix-shape"] ?? P.shape,
    prefixLen: int(a["prefix-len"], "prefix-len", P.prefixLen, 16),
    suffixLen: int(a["prefix-suffix"], "prefix-suffix", P.suffixLen),
    repeats: int(a["prefix-repeats"], "prefix-repeats", P.repeats),
    method: (a["prefix-method"] ?? P.method) as CompressionMethod,
    rate: Number(a["prefix-rate"] ?? P.rate),
  };
  if (!(METHOD_NAMES as readonly string[]).includes(prefix.method) || prefix.method === "none") throw new Error(`--prefix-method must be one of ${METHOD_NAMES.filter((m) => m !== "none").join(", ")}`);
  if (!(prefix.rate === 0 || prefix.rate >= 1)) throw new Error("--prefix-rate must be 0 (skip) or >= 1");

  // the run's identity first: adapter, features, limits, code
  const gpu = await createGpu();
  rep.setGpu(gpu.adapterName, gpu);
  rep.emit({ suite: "env", test: "env", adapter: describeGpu(gpu), features: gpu.features, limits: gpu.limits, source_digest: sourceDigest(), argv });
  gpu.device.destroy();

  let failed = 0;
  const guard = async (suite: string, shape: string | null, fn: () => Promise<void>) => {
    const t0 = performance.now();
    try {
      await fn();
      rep.log(`${suite}${shape ? " " + shape : ""} done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    } catch (e) {
      failed++;
      rep.emit({ suite, test: "error", shape, message: (e as Error).message });
      rep.log(`${suite} failed: ${(e as Error).stack ?? e}`);
    }
  };
  for (const suite of suites) {
    if (suite === "kernels") for (const s of shapes) await guard(suite, s, () => kernelSuite(ctx, s, kernels));
    if (["e2e", "single", "prefill", "batch"].includes(suite)) {
      const parts = suite === "e2e" ? { single: true, prefill: true, batch: true } : { single: suite === "single", prefill: suite === "prefill", batch: suite === "batch" };
      for (const s of shapes) await guard(suite, s, () => e2eSuite(ctx, s, e2e, parts));
    }
    if (suite === "overhead") await guard(suite, overhead.shape, () => overheadSuite(ctx, overhead));
    // the batch sweep's flags, batches 1 and 32 unless --batches says
    if (suite === "sampling") for (const s of shapes) await guard(suite, s, () => samplingSuite(ctx, s, { batches: a.batches ? e2e.batches : [1, 32], promptLen: e2e.batchPromptLen, tokens: e2e.batchTokens }));
    if (suite === "compress") await guard(suite, compress.shape, () => compressSuite(ctx, compress));
    if (suite === "prefix") await guard(suite, prefix.shape, () => prefixSuite(ctx, prefix));
  }
  return failed ? 1 : 0;
}
