// End-to-end figures through Engine's public API on a synthetic model: single-stream
// decode tokens/s, prefill tokens/s and time to first token, and batched decode
// tokens/s over a sweep of batch sizes. Output lengths are fixed (ignore EOS).
import type { Engine } from "../src/engine/engine.ts";
import { GEMM_SMALL_ROWS } from "../src/model/gemm.ts";
import { Sequence } from "../src/engine/sequence.ts";
import { shapeByName, configFromShape } from "./shapes.ts";
import { GREEDY, kvBytesFor, randomIds, round, syntheticEngine, type BenchContext } from "./common.ts";
import { createStorage, readBuffer } from "../src/gpu/buffers.ts";
import { median, PassTimer } from "./profile.ts";

/** Median round trip of a 16-byte readback on an idle queue: the floor of each decode round's wait. */
async function readbackLatencyMs(e: Engine): Promise<number> {
  const b = createStorage(e.gpu.device, 16, "latency-probe");
  const t: number[] = [];
  for (let i = 0; i < 21; i++) {
    const t0 = performance.now();
    await readBuffer(e.gpu.device, b, 0, 16);
    t.push(performance.now() - t0);
  }
  b.destroy();
  return t.sort((a, b) => a - b)[t.length >> 1];
}

export interface E2eOptions {
  /** single stream: prompt tokens and generated tokens */
  promptLen: number;
  tokens: number;
  /** prompt lengths for prefill tokens/s and TTFT */
  prefillLens: number[];
  /** batched decode sweep */
  batches: number[];
  batchPromptLen: number;
  batchTokens: number;
}

export const E2E_DEFAULTS: E2eOptions = {
  promptLen: 128,
  tokens: 256,
  prefillLens: [128, 2048],
  batches: [1, 2, 4, 8, 16, 32, 64, 128, 256],
  batchPromptLen: 32,
  batchTokens: 64,
};

export const seqOf = (e: Engine, prompt: number[], maxTokens: number) => new Sequence(prompt, { maxTokens, sampling: GREEDY, ignoreEos: true });
const outputTokens = (seqs: Sequence[]) => seqs.reduce((a, s) => a + s.output.length, 0);

/**
 * Runs `seqs` to completion and splits the time: prefill until every sequence has its
 * first token, then one decode round (a pipeline still compiling lands there), then the
 * timed decode. When the first round was the only one (lookahead >= tokens), it is timed.
 */
export async function runTimed(e: Engine, seqs: Sequence[]) {
  const t0 = performance.now();
  for (const s of seqs) e.add(s);
  let firstToken = NaN;
  while (e.waiting.length) {
    await e.step();
    if (Number.isNaN(firstToken) && seqs.some((s) => s.output.length > 0)) firstToken = performance.now() - t0;
  }
  const prefilled = performance.now();
  if (!e.idle) await e.step();
  const t1 = performance.now();
  const n1 = outputTokens(seqs);
  let rounds = 0;
  while (!e.idle) {
    await e.step();
    rounds++;
  }
  const t2 = performance.now();
  const firstRoundOnly = rounds === 0;
  const decoded = outputTokens(seqs) - (firstRoundOnly ? seqs.length : n1);
  return {
    ttftMs: firstToken,
    prefillMs: prefilled - t0,
    decodeMs: t2 - (firstRoundOnly ? prefilled : t1),
    decoded,
    rounds: firstRoundOnly ? 1 : rounds,
    truncated: seqs.filter((s) => s.output.length < s.opts.maxTokens).length,
  };
}

export async function warmUp(e: Engine, ctx: BenchContext) {
  // compiles both prefill GEMM variants (short and long steps), both GEMV batch variants
  // and split/unsplit attention; a whole prefill chunk grows the step's buffers to full
  // size (first-time allocations once cost a timed 2048-token prefill ~200 ms)
  const v = e.cfg.vocab;
  await runTimed(e, [seqOf(e, randomIds(40, ctx.seed, v), 8)]);
  const long = Math.max(GEMM_SMALL_ROWS, e.opts.prefillChunk) + 8;
  const fits = [long, GEMM_SMALL_ROWS + 8].find((n) => n + 4 <= e.cfg.maxContext);
  if (fits) await runTimed(e, [seqOf(e, randomIds(fits, ctx.seed + 3, v), 2)]);
  await runTimed(e, [seqOf(e, randomIds(24, ctx.seed + 1, v), 8), seqOf(e, randomIds(20, ctx.seed + 2, v), 8)]);
}

export async function e2eSuite(ctx: BenchContext, shapeName: string, o: E2eOptions, parts = { single: true, prefill: true, batch: true }) {
  const { rep } = ctx;
  const shape = shapeByName(shapeName);
  const cfg0 = configFromShape(shape, 1);
  const common = { suite: "e2e", shape: shape.name, ...(ctx.quant ? { quant: ctx.quant } : {}) };

  // single stream and prefill: one sequence at a time
  if (parts.single || parts.prefill) {
    const longest = Math.max(parts.single ? o.promptLen + o.tokens : 0, ...(parts.prefill ? o.prefillLens.map((p) => p + 8) : [0]), 64);
    const e = await syntheticEngine(ctx, shape, { maxContext: longest + 64, kvMemory: kvBytesFor(cfg0, 2, longest + 64), maxSeqs: 4 });
    try {
      await warmUp(e, ctx);
      const lookahead = e.opts.lookahead;
      if (parts.single && ctx.deadline.fits(10000)) {
        const s = seqOf(e, randomIds(o.promptLen, ctx.seed + 10, e.cfg.vocab), o.tokens);
        const st0 = { ...e.stats };
        const timer = e.gpu.features.timestamps ? new PassTimer(e.gpu.device) : null;
        e.kc.passTimer = timer;
        const r = await runTimed(e, [s]);
        e.kc.passTimer = null;
        const tokS = (1000 * r.decoded) / r.decodeMs;
        const steps = e.stats.decodeSteps - st0.decodeSteps;
        // the decode steps' passes are the last ones (one pass per step)
        const passes = timer ? await timer.read() : null;
        timer?.destroy();
        const last = (xs: number[]) => xs.slice(-Math.min(r.decoded, xs.length)).filter((x) => Number.isFinite(x));
        rep.emit({
          ...common, test: "single_stream", prompt_len: o.promptLen, tokens: o.tokens, lookahead,
          // host side of a decode step: recording and submitting it, and waiting on the token readback
          host_encode_ms_per_step: round((e.stats.encodeMs - st0.encodeMs) / steps, 3),
          readback_wait_ms_per_step: round((e.stats.waitMs - st0.waitMs) / steps, 3),
          idle_readback_ms: round(await readbackLatencyMs(e), 3),
          // timestamps around the real decode steps: GPU time per step and the idle time between steps
          gpu_busy_ms_per_step: passes ? round(median(last(passes.busyMs)), 3) : null,
          gpu_gap_ms_per_step: passes ? round(last(passes.gapMs).reduce((a, b) => a + b, 0) / Math.max(1, last(passes.gapMs).length), 3) : null,
          ttft_ms: round(r.ttftMs, 2), decode_tok_s: round(tokS, 2), itl_ms: round(r.decodeMs / r.decoded, 3), decoded: r.decoded, truncated: r.truncated,
        });
      }
      if (parts.prefill) {
        for (const P of o.prefillLens) {
          if (!ctx.deadline.fits(10000)) break;
          const s = seqOf(e, randomIds(P, ctx.seed + P, e.cfg.vocab), 2);
          const r = await runTimed(e, [s]);
          rep.emit({ ...common, test: "prefill", prompt_len: P, prefill_chunk: e.opts.prefillChunk, ttft_ms: round(r.ttftMs, 2), prefill_tok_s: round((1000 * P) / r.ttftMs, 1) });
        }
      }
    } finally {
      e.destroy();
    }
  }

  // batched decode: B sequences prefilled together, then decoded as one batch
  if (parts.batch) {
    const maxB = Math.max(...o.batches);
    // prompt + output + the lookahead steps a round may run past the end
    const ctxLen = o.batchPromptLen + o.batchTokens + (ctx.lookahead ?? 16);
    const e = await syntheticEngine(ctx, shape, { maxContext: ctxLen + 64, kvMemory: kvBytesFor(cfg0, maxB, ctxLen), maxSeqs: maxB });
    try {
      await warmUp(e, ctx);
      let lastMs = 0;
      for (const B of o.batches) {
        // twice the batch costs up to twice the time once compute-bound: skip what can't finish
        if (!ctx.deadline.fits(lastMs * 2.2 + 2000)) {
          rep.emit({ ...common, test: "batch_decode", batch: B, skipped: "deadline" });
          continue;
        }
        const t0 = performance.now();
        const seqs = Array.from({ length: B }, (_, i) => seqOf(e, randomIds(o.batchPromptLen, ctx.seed * 1000 + B * 7 + i, e.cfg.vocab), o.batchTokens));
        const r = await runTimed(e, seqs);
        lastMs = performance.now() - t0;
        const tokS = (1000 * r.decoded) / r.decodeMs;
        rep.emit({
          ...common, test: "batch_decode", batch: B, prompt_len: o.batchPromptLen, tokens: o.batchTokens, lookahead: e.opts.lookahead,
          decode_tok_s: round(tokS, 1), per_seq_tok_s: round(tokS / B, 2), step_ms: round(r.decodeMs / (r.decoded / B), 3),
          prefill_tok_s: round((1000 * B * o.batchPromptLen) / r.prefillMs, 1), truncated: r.truncated,
        });
      }
    } finally {
      e.destroy();
    }
  }
}
