// The KV-Compress throughput experiment (paper: Llama-3.1-8B on an L4, 6000-token
// prompts, throughput up to 5.18x at 64x because decode batches grow): a KV memory
// budget that holds about `kvSeqs` uncompressed sequences, `prompts` prompts queued at
// once, fixed output lengths, one run per compression rate (kvcompress, continual).
// Each rate's record is printed the moment it finishes, so a cut-short run still
// yields data. And the cost of the compression passes against decode step time.
import type { Engine } from "../src/engine/engine.ts";
import { Sequence } from "../src/engine/sequence.ts";
import { DEFAULT_COMPRESSION, type Allocation, type CompressionOptions } from "../src/cache/compression.ts";
import { configFromShape, shapeByName } from "./shapes.ts";
import { GREEDY, kvBytesFor, randomIds, round, syntheticEngine, type BenchContext } from "./common.ts";
import { PassTimer } from "./profile.ts";

export interface CompressOptions {
  shape: string;
  prompts: number;
  promptLen: number;
  outputLen: number;
  rates: number[];
  /** uncompressed sequences (prompt + output) the KV budget holds */
  kvSeqs: number;
  interval: number;
  /** method for rate 1: "none" is the uncompressed baseline */
  rate1: "none" | "kvcompress";
}

export const COMPRESS_DEFAULTS: CompressOptions = {
  shape: "llama-3.2-1b",
  prompts: 128,
  promptLen: 6000,
  outputLen: 500,
  rates: [1, 2, 4, 8, 16, 32, 64],
  kvSeqs: 3,
  interval: 16,
  rate1: "none",
};

function compressionFor(rate: number, o: { interval: number; rate1: string }): Partial<CompressionOptions> {
  if (rate === 1 && o.rate1 === "none") return { method: "none" };
  return { method: "kvcompress", rate, interval: o.interval };
}

/** What Engine.stats counted between two snapshots (compression time by part, preemptions...). */
function statsDelta(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) if (typeof v === "number") out[k] = round(v - (before[k] ?? 0), 3)!;
  return out;
}

interface RunStats {
  engineStats: Record<string, number>;
  wallMs: number;
  promptTokens: number;
  outputTokens: number;
  maxDecodeBatch: number;
  meanDecodeBatch: number;
  decodeRounds: number;
  compressMs: number;
  compressions: number;
  evicted: number;
  truncated: number;
  ttftMs: number[];
  error: string | null;
}

/**
 * Queues every sequence at once and steps the engine until idle, watching the decode
 * batch: a step in which running sequences gained tokens was a decode round of
 * (at most) the sequences running before it.
 */
async function drive(e: Engine, seqs: Sequence[], deadlineMs: number): Promise<RunStats> {
  const before = { ...e.stats };
  const t0 = performance.now();
  const ttft = new Map<Sequence, number>();
  for (const s of seqs) e.add(s);
  let maxBatch = 0, batchSum = 0, rounds = 0;
  let error: string | null = null;
  try {
    while (!e.idle) {
      if (performance.now() - t0 > deadlineMs) throw new Error("deadline reached before the run finished");
      const running = e.running.filter((s) => !s.finished);
      const had = running.map((s) => s.output.length);
      await e.step();
      const grew = running.filter((s, i) => s.output.length > had[i]).length;
      if (grew > 0) {
        maxBatch = Math.max(maxBatch, grew);
        batchSum += grew;
        rounds++;
      }
      for (const s of seqs) if (!ttft.has(s) && s.output.length > 0) ttft.set(s, performance.now() - t0);
    }
  } catch (err) {
    error = (err as Error).message;
    for (const s of seqs) if (!s.finished) e.abort(s);
  }
  return {
    engineStats: statsDelta(before, { ...e.stats }),
    wallMs: performance.now() - t0,
    promptTokens: seqs.filter((s) => s.output.length > 0).reduce((a, s) => a + s.prompt.length, 0),
    outputTokens: seqs.reduce((a, s) => a + s.output.length, 0),
    maxDecodeBatch: maxBatch,
    meanDecodeBatch: rounds ? batchSum / rounds : 0,
    decodeRounds: rounds,
    compressMs: e.stats.compressMs - before.compressMs,
    compressions: e.stats.compressions - before.compressions,
    evicted: e.stats.evictedTokens - before.evictedTokens,
    truncated: seqs.filter((s) => s.output.length < s.opts.maxTokens).length,
    ttftMs: [...ttft.values()],
    error,
  };
}

export async function compressSuite(ctx: BenchContext, o: CompressOptions) {
  const { rep } = ctx;
  const shape = shapeByName(o.shape);
  const cfg0 = configFromShape(shape, 1);
  const seqLen = o.promptLen + o.outputLen;
  const kvMemory = kvBytesFor(cfg0, o.kvSeqs, seqLen);
  const common = {
    suite: "compress", shape: shape.name, prompts: o.prompts, prompt_len: o.promptLen, output_len: o.outputLen,
    kv_seqs: o.kvSeqs, kv_memory_bytes: kvMemory, interval: o.interval,
  };
  let e = await syntheticEngine(ctx, shape, { maxContext: seqLen + 64, kvMemory, maxSeqs: o.prompts });
  let baseline: number | null = null;
  try {
    let lastMs = 0;
    // rate 1 first: every other rate's ratio is against it
    for (const rate of [...o.rates].sort((a, b) => (a === 1 ? -1 : b === 1 ? 1 : 0))) {
      if (!ctx.deadline.fits(Math.min(lastMs, 30000))) {
        rep.emit({ ...common, test: "rate", rate, skipped: "deadline" });
        continue;
      }
      const compression = compressionFor(rate, o);
      // every rate runs the same prompts: none may start from K/V the rate before cached
      // (a preempted sequence's recompute still finds its own, as when serving)
      e.sharing.prefix.clear();
      const seqs = Array.from({ length: o.prompts }, (_, i) => new Sequence(randomIds(o.promptLen, ctx.seed * 7919 + i, e.cfg.vocab), {
        maxTokens: o.outputLen, sampling: GREEDY, ignoreEos: true, compression,
      }));
      const r = await drive(e, seqs, ctx.deadline.leftMs - 2000);
      lastMs = r.wallMs;
      const total = (1000 * (r.promptTokens + r.outputTokens)) / r.wallMs;
      if (rate === 1 && !r.error) baseline = total;
      const ttft = [...r.ttftMs].sort((a, b) => a - b);
      rep.emit({
        ...common, test: "rate", rate, method: compression.method, planner: e.opts.gpuPlanner ? "gpu" : "host", wall_s: round(r.wallMs / 1000, 2),
        total_tok_s: round(total, 1), output_tok_s: round((1000 * r.outputTokens) / r.wallMs, 1),
        throughput_ratio: baseline ? round(total / baseline, 3) : null,
        prompt_tokens: r.promptTokens, output_tokens: r.outputTokens, finished_full: o.prompts - r.truncated, truncated: r.truncated,
        max_decode_batch: r.maxDecodeBatch, mean_decode_batch: round(r.meanDecodeBatch, 2), decode_rounds: r.decodeRounds,
        compress_s: round(r.compressMs / 1000, 3), compress_share_pct: round((100 * r.compressMs) / r.wallMs, 2),
        compressions: r.compressions, evicted_tokens: r.evicted,
        ttft_p50_s: ttft.length ? round(ttft[ttft.length >> 1] / 1000, 3) : null,
        // every Engine.stats counter over this run: compression by part (ms), preemptions, ...
        engine_stats: r.engineStats,
        error: r.error,
      });
      if (r.error) {
        // a failed run may leave the engine mid-step: start the next rate on a fresh one
        if (!ctx.deadline.fits(10000)) break;
        e.destroy();
        e = await syntheticEngine(ctx, shape, { maxContext: seqLen + 64, kvMemory, maxSeqs: o.prompts });
      }
    }
  } finally {
    e.destroy();
  }
}

export interface OverheadOptions {
  shape: string;
  batch: number;
  promptLen: number;
  outputLen: number;
  rate: number;
  interval: number;
  /** kvcompress's budget split in every compressing run */
  allocation: Allocation;
}

/** A compression rate that evicts little: the caches stay about as long as uncompressed. */
const EQUAL_CACHE_RATE = 1.02;
const EQUAL_CACHE_PAIRS = 3;

export const OVERHEAD_DEFAULTS: OverheadOptions = { shape: "llama-3.2-1b", batch: 16, promptLen: 2048, outputLen: 256, rate: 8, interval: 16, allocation: DEFAULT_COMPRESSION.allocation };

/**
 * Compression cost at interval N: the same batch decoded without compression and with
 * continual kvcompress; the time inside compression passes over decode time, and the
 * end-to-end slowdown (scoring during attention included, shorter caches credited).
 */
export async function overheadSuite(ctx: BenchContext, o: OverheadOptions) {
  const { rep } = ctx;
  const shape = shapeByName(o.shape);
  const cfg0 = configFromShape(shape, 1);
  const seqLen = o.promptLen + o.outputLen;
  const e = await syntheticEngine(ctx, shape, { maxContext: seqLen + 64, kvMemory: kvBytesFor(cfg0, o.batch, seqLen + 32), maxSeqs: o.batch });
  try {
    const run = async (compression: Partial<CompressionOptions>, batch = o.batch, promptLen = o.promptLen, outputLen = o.outputLen, timed = false) => {
      e.sharing.prefix.clear(); // the runs repeat their prompts: each prefills them
      const seqs = Array.from({ length: batch }, (_, i) => new Sequence(randomIds(promptLen, ctx.seed * 31 + i, e.cfg.vocab), {
        maxTokens: outputLen, sampling: GREEDY, ignoreEos: true, compression,
      }));
      for (const s of seqs) e.add(s);
      while (e.waiting.length) await e.step();
      const c0 = e.stats.compressMs, n0 = e.stats.compressions, ov0 = e.stats.compressOverlapped;
      const parts0 = { gather: e.stats.gatherMs, plan: e.stats.planMs, apply: e.stats.applyMs };
      const t0 = performance.now();
      const tok0 = seqs.reduce((a, s) => a + s.output.length, 0);
      const timer = timed && e.gpu.features.timestamps ? new PassTimer(e.gpu.device, 2048) : null;
      e.kc.passTimer = timer;
      await e.runUntilIdle().finally(() => (e.kc.passTimer = null));
      const decodeMs = performance.now() - t0;
      const steps = seqs.reduce((a, s) => a + s.output.length, 0) - tok0;
      const parts = { gather: e.stats.gatherMs - parts0.gather, plan: e.stats.planMs - parts0.plan, apply: e.stats.applyMs - parts0.apply };
      const gpu = timer ? gpuTimeline(timer.labels, await timer.read()) : null;
      timer?.destroy();
      return { decodeMs, compressMs: e.stats.compressMs - c0, compressions: e.stats.compressions - n0, overlapped: e.stats.compressOverlapped - ov0, steps: steps / batch, parts, gpu };
    };
    // warm-up, short but at the full batch: the pipelines of both paths compile here
    // (the GEMV's tiles depend on the batch)
    const warm = Math.min(o.promptLen, 96);
    await run({ method: "none" }, o.batch, warm, 2 * o.interval + 2);
    await run({ method: "kvcompress", rate: o.rate, interval: o.interval, allocation: o.allocation }, o.batch, warm, 2 * o.interval + 2);
    const plain = await run({ method: "none" });
    const stepPlain = plain.decodeMs / plain.steps;
    const common = { suite: "overhead", shape: shape.name, batch: o.batch, prompt_len: o.promptLen, output_len: o.outputLen, interval: o.interval, allocation: o.allocation, step_ms_plain: round(stepPlain, 3) };
    /** What every compressing run reports: its step time, passes (those that overlapped decoding) and slowdown. */
    const figures = (r: Awaited<ReturnType<typeof run>>) => ({
      step_ms_compressing: round(r.decodeMs / r.steps, 3),
      compressions: r.compressions,
      // passes (all sequences due at once) whose host time ran while the next round decoded
      overlapped_passes: r.overlapped,
      compress_ms_per_pass: round(r.compressMs / Math.max(1, r.compressions), 3),
      slowdown_pct: round((100 * (r.decodeMs / r.steps - stepPlain)) / stepPlain, 2),
    });
    // the GPU planner (the default) and the host planner, side by side
    for (const planner of ["gpu", "host"] as const) {
      e.opts.gpuPlanner = planner === "gpu";
      if (planner === "host") await run({ method: "kvcompress", rate: o.rate, interval: o.interval, allocation: o.allocation }, o.batch, warm, 2 * o.interval + 2);
      const comp = await run({ method: "kvcompress", rate: o.rate, interval: o.interval, allocation: o.allocation });
      const decodeOnly = comp.decodeMs - comp.compressMs;
      const perPass = (ms: number) => round(ms / Math.max(1, comp.compressions), 3);
      rep.emit({
        ...common, test: "compress_overhead", planner, rate: o.rate, ...figures(comp),
        compress_ms_total: round(comp.compressMs, 1),
        // where a pass goes: GPU ranking or scores gathered, read back; host planning; compaction submit
        pass_ms_gather: perPass(comp.parts.gather),
        pass_ms_plan: perPass(comp.parts.plan),
        pass_ms_apply: perPass(comp.parts.apply),
        // time inside compression passes, against the decode time around them
        compress_overhead_pct: round((100 * comp.compressMs) / decodeOnly, 2),
        compress_share_pct: round((100 * comp.compressMs) / comp.decodeMs, 2),
      });
      if (!ctx.deadline.fits(comp.decodeMs * 2)) break;
    }
    e.opts.gpuPlanner = true;
    // what compressing costs the decode loop once passes overlap decoding: a rate that
    // evicts ~2% keeps the caches about as long as uncompressed ones, so the slowdown
    // is the passes' GPU work, the time the GPU waits on them, and the attention scoring.
    // The same run with no pass after the first (interval past the output) scores
    // alone: the difference of the two is what the passes cost the decode loop.
    // The pair runs EQUAL_CACHE_PAIRS times in turn and each side reports its median run
    // (by step time): a difference of ~0.1 ms per step is what is measured.
    if (ctx.deadline.fits(plain.decodeMs * (1 + 2 * EQUAL_CACHE_PAIRS))) {
      const eqs: Awaited<ReturnType<typeof run>>[] = [], scorings: typeof eqs = [];
      for (let i = 0; i < EQUAL_CACHE_PAIRS; i++) {
        eqs.push(await run({ method: "kvcompress", rate: EQUAL_CACHE_RATE, interval: o.interval, allocation: o.allocation }, o.batch, o.promptLen, o.outputLen, true));
        scorings.push(await run({ method: "kvcompress", rate: EQUAL_CACHE_RATE, interval: 1_000_000, allocation: o.allocation }, o.batch, o.promptLen, o.outputLen, true));
      }
      const medianRun = (rs: typeof eqs) => rs.slice().sort((a, b) => a.decodeMs / a.steps - b.decodeMs / b.steps)[rs.length >> 1];
      const [eq, scoring] = [medianRun(eqs), medianRun(scorings)];
      const [stepEq, stepScoring] = [eq.decodeMs / eq.steps, scoring.decodeMs / scoring.steps];
      const per = (ms: number | undefined, n: number) => (ms === undefined ? null : round(ms / Math.max(1, n), 3));
      rep.emit({
        ...common, test: "compress_slowdown_equal_cache", planner: "gpu", rate: EQUAL_CACHE_RATE, ...figures(eq),
        step_ms_scoring_only: round(stepScoring, 3),
        scoring_pct: round((100 * (stepScoring - stepPlain)) / stepPlain, 2),
        pass_cost_pct: round((100 * (stepEq - stepScoring)) / stepScoring, 2),
        pairs: EQUAL_CACHE_PAIRS,
        // timestamps around every pass of both runs: where the passes' time goes on the GPU
        gpu_ms_per_rank: per(eq.gpu?.busy.kv_rank, eq.gpu?.count.kv_rank ?? 0),
        gpu_ms_per_evict: per(eq.gpu?.busy.kv_evict, eq.gpu?.count.kv_evict ?? 0),
        gpu_step_ms: per(eq.gpu?.busy.embed, eq.steps),
        gpu_step_ms_scoring_only: per(scoring.gpu?.busy.embed, scoring.steps),
        gpu_idle_ms_per_step: per(eq.gpu?.idleMs, eq.steps),
        gpu_idle_ms_per_step_scoring_only: per(scoring.gpu?.idleMs, scoring.steps),
      });
    }
  } finally {
    e.destroy();
  }
}

/**
 * A run's timestamped passes summed by name (a model step's first kernel is "embed"),
 * and the GPU's idle time between passes.
 */
function gpuTimeline(labels: string[], t: { busyMs: number[]; gapMs: number[] }) {
  const busy: Record<string, number> = {}, count: Record<string, number> = {};
  let idleMs = 0;
  t.busyMs.forEach((ms, i) => {
    const l = labels[i] ?? "";
    busy[l] = (busy[l] ?? 0) + ms;
    count[l] = (count[l] ?? 0) + 1;
    if (Number.isFinite(t.gapMs[i])) idleMs += Math.max(0, t.gapMs[i]);
  });
  return { busy, count, idleMs };
}
