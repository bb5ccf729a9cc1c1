// Shared pieces of the benchmark suites: synthetic engines at a model shape, the run's
// identity (GPU, runtime, commit, source digest), result records as JSON lines, a
// deadline so a suite stops starting work it can't finish, and seeded prompts.
import { appendFileSync, readdirSync, readFileSync, statSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Engine, type EngineOptions } from "../src/engine/engine.ts";
import { BlockPool } from "../src/cache/block-pool.ts";
import { type ModelConfig } from "../src/model/config.ts";
import { configFromShape, shapeByName, type ModelShape } from "./shapes.ts";
import { randomWeights } from "./random-weights.ts";
import { quantizeWeights, type OnLoadQuant } from "../src/model/quantize-weights.ts";
import { TextTokenizer } from "../src/model/tokenizer.ts";
import { describeGpu, type Gpu } from "../src/gpu/device.ts";

export const ROOT = fileURLToPath(new URL("..", import.meta.url));
const env = (k: string): string | undefined => (globalThis as any).process?.env?.[k] ?? (globalThis as any).Deno?.env?.get(k);

export const runtime: "bun" | "deno" = typeof (globalThis as any).Bun !== "undefined" ? "bun" : "deno";
export const runtimeVersion = runtime === "bun" ? (globalThis as any).Bun.version : (globalThis as any).Deno.version.deno;

/** Datasheet HBM bandwidth by GPU name, GB/s (10^9 bytes). */
const HBM_GBPS: [RegExp, number][] = [
  [/H200/i, 4800],
  [/H100.*(PCIe)/i, 2000],
  [/H100/i, 3350],
  [/A100/i, 2039],
  [/L4\b/i, 300],
];
/**
 * The GPU's model name. Dawn on NVIDIA names the adapter by its driver ("nvidia NVIDIA:
 * 580.159.04 ..."), so KVC_GPU_NAME (bench/run-device.sh sets it from nvidia-smi) wins.
 */
export function gpuName(adapterName: string): string {
  return env("KVC_GPU_NAME")?.trim() || adapterName;
}

export function datasheetGbps(gpuName: string): number | null {
  const o = env("KVC_HBM_GBPS");
  if (o) return Number(o);
  for (const [re, v] of HBM_GBPS) if (re.test(gpuName)) return v;
  return null;
}

export function commitId(): string {
  const e = env("KVC_COMMIT");
  if (e) return e;
  const r = spawnSync("git", ["rev-parse", "--short=12", "HEAD"], { cwd: ROOT, encoding: "utf8" });
  if (r.status !== 0) return "unknown";
  const dirty = spawnSync("git", ["status", "--porcelain", "--", "src", "cli", "kernels", "bench"], { cwd: ROOT, encoding: "utf8" });
  return r.stdout.trim() + (dirty.stdout?.trim() ? "+dirty" : "");
}

/** sha256 of every file under src/, cli/, kernels/, bench/ (path and bytes, sorted): pins the code a run used. */
export function sourceDigest(): string {
  const h = createHash("sha256");
  const walk = (rel: string) => {
    const abs = join(ROOT, rel);
    for (const name of readdirSync(abs).sort()) {
      const p = join(rel, name);
      if (name === "results" || name.startsWith(".")) continue;
      if (statSync(join(ROOT, p)).isDirectory()) walk(p);
      else h.update(p).update(readFileSync(join(ROOT, p)));
    }
  };
  for (const d of ["src", "cli", "kernels", "bench"]) walk(d);
  return h.digest("hex").slice(0, 16);
}

// --- records ---

export type BenchRecord = Record<string, unknown> & { suite: string; test: string };

export class Reporter {
  gpu = "unknown";
  private base: Record<string, unknown>;
  constructor(private outFile: string | null, private quiet = false) {
    this.base = { runtime, runtime_version: runtimeVersion, commit: commitId() };
  }
  /**
   * Names the GPU in every later record (KVC_GPU_NAME, else the adapter's name), and the
   * WebGPU backend and the tensor-core settings the figures were made with.
   */
  setGpu(adapterName: string, g?: Gpu) {
    this.gpu = gpuName(adapterName);
    if (!g) return;
    const env = (n: string) => (globalThis as any).process?.env?.[n] ?? (globalThis as any).Deno?.env?.get(n) ?? null;
    Object.assign(this.base, {
      webgpu: g.backend,
      f16: g.features.f16,
      f16_weights: g.features.f16Weights,
      subgroup_matrix: !!g.features.subgroupMatrix,
      mma_min_rows: env("KVC_MMA_MIN_ROWS"),
      mma_attn: env("KVC_MMA_ATTN"),
    });
  }
  /** One JSON line on stdout (and appended to --out) as soon as a figure exists. */
  emit(r: BenchRecord) {
    const line = JSON.stringify({ ...this.base, gpu: this.gpu, ...r, time: new Date().toISOString() });
    if (!this.quiet) console.log(line);
    if (this.outFile) appendFileSync(this.outFile, line + "\n");
  }
  log(msg: string) {
    console.error(`[bench] ${msg}`);
  }
}

/** Wall-clock budget: suites ask before starting a measurement whether it still fits. */
export class Deadline {
  private end: number;
  constructor(seconds: number | null) {
    this.end = seconds === null ? Infinity : performance.now() + seconds * 1000;
  }
  get leftMs(): number {
    return this.end - performance.now();
  }
  fits(estimateMs: number): boolean {
    return estimateMs < this.leftMs;
  }
}

export interface BenchContext {
  rep: Reporter;
  deadline: Deadline;
  seed: number;
  lookahead?: number;
  /** caps storage bindings (tests exercise shards on small adapters) */
  maxBindingBytes?: number;
  /** random weights quantized on the GPU to this block format (records carry `quant`) */
  quant?: OnLoadQuant;
}

// --- engines over random weights ---

/**
 * Synthetic models take token ids; they have no vocabulary text. The engine wants a
 * tokenizer object, so it gets an empty word-level one that no benchmark calls.
 */
export function placeholderTokenizer(): TextTokenizer {
  return new TextTokenizer({
    version: "1.0", truncation: null, padding: null, added_tokens: [], normalizer: null,
    pre_tokenizer: { type: "WhitespaceSplit" }, post_processor: null, decoder: null,
    model: { type: "WordLevel", vocab: { "<unk>": 0 }, unk_token: "<unk>" },
  }, {});
}

/** Bytes of KV memory (K, V, positions, scores) that hold `tokens` tokens of `seqs` sequences uncompressed. */
export function kvBytesFor(cfg: ModelConfig, seqs: number, tokens: number, blockSize = 16): number {
  const blocks = seqs * cfg.layers * cfg.kvHeads * Math.ceil(tokens / blockSize);
  return blocks * BlockPool.bytesPerBlock(blockSize, cfg.headDim);
}

export interface SyntheticOptions extends EngineOptions {
  maxContext: number;
}

export async function syntheticEngine(ctx: BenchContext, shape: string | ModelShape, o: SyntheticOptions): Promise<Engine> {
  const s = typeof shape === "string" ? shapeByName(shape) : shape;
  const cfg = configFromShape(s, o.maxContext);
  const t0 = performance.now();
  const e = await Engine.create(cfg, placeholderTokenizer(), (gpu, kc) => {
    const w = randomWeights(gpu, kc, cfg, ctx.seed);
    return ctx.quant ? quantizeWeights(kc, w, ctx.quant) : w;
  }, {
    lookahead: ctx.lookahead,
    maxBindingBytes: ctx.maxBindingBytes,
    ...o,
    log: (m) => ctx.rep.log(`${s.name}: ${m}`),
  });
  ctx.rep.setGpu(e.gpu.adapterName, e.gpu);
  ctx.rep.log(`${s.name}: ${(e.weights.bytes / 2 ** 30).toFixed(2)} GiB of random weights${ctx.quant ? ` (${ctx.quant})` : ""} built on the GPU in ${(performance.now() - t0).toFixed(0)} ms (${describeGpu(e.gpu)})`);
  return e;
}

// --- inputs ---

/** xorshift32 stream of token ids in [lo, hi): prompts that no tokenizer made. */
export function randomIds(n: number, seed: number, vocab: number): number[] {
  let s = (seed >>> 0) || 1;
  const lo = Math.min(1000, vocab >> 2);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    out[i] = lo + (s % (vocab - lo));
  }
  return out;
}

export const GREEDY = { temperature: 0, topP: 1, topK: 0, seed: 0 };

export const round = (x: number, d = 3) => (Number.isFinite(x) ? Number(x.toFixed(d)) : null);

export function parseList(v: string | undefined, def: number[], name: string): number[] {
  if (v === undefined) return def;
  const xs = v.split(",").map((s) => Number(s.trim()));
  if (!xs.length || xs.some((x) => !Number.isFinite(x) || x <= 0)) throw new Error(`--${name} takes positive numbers separated by commas (got "${v}")`);
  return xs;
}
