// What logprobs and constrained decoding cost on the decode path, on a synthetic model:
// the same batch decoded four ways, tokens/s each. `logprobs` adds kernels/logprobs.wgsl
// (top 20) and its readback; `constrained` gives every sequence a constraint whose mask
// allows every token, so it measures the engine's part of constrained decoding (one step
// per readback, the mask upload and kernels/token_mask.wgsl), not the grammar engine's
// host time per mask (xgrammar's, which grows with the vocabulary and the grammar).
import type { Engine } from "../src/engine/engine.ts";
import { Sequence, type TokenConstraint } from "../src/engine/sequence.ts";
import { configFromShape, shapeByName } from "./shapes.ts";
import { GREEDY, kvBytesFor, randomIds, round, syntheticEngine, type BenchContext } from "./common.ts";
import { runTimed, warmUp } from "./e2e.ts";

export interface SamplingOptions {
  batches: number[];
  promptLen: number;
  tokens: number;
}

const MODES = ["plain", "logprobs", "constrained", "logprobs+constrained"] as const;

/** A constraint that allows every token: the engine's cost of constrained decoding alone. */
function allowAll(vocab: number): TokenConstraint {
  const mask = new Uint32Array(Math.ceil(vocab / 32)).fill(0xffffffff);
  return { nextMask: async () => mask, accept: () => true, terminated: false };
}

export async function samplingSuite(ctx: BenchContext, shapeName: string, o: SamplingOptions) {
  const shape = shapeByName(shapeName);
  const cfg0 = configFromShape(shape, 1);
  const maxB = Math.max(...o.batches);
  const ctxLen = o.promptLen + o.tokens + (ctx.lookahead ?? 16);
  const e: Engine = await syntheticEngine(ctx, shape, { maxContext: ctxLen + 64, kvMemory: kvBytesFor(cfg0, maxB, ctxLen), maxSeqs: maxB });
  try {
    await warmUp(e, ctx);
    for (const B of o.batches) {
      for (const mode of MODES) {
        if (!ctx.deadline.fits(5000)) {
          ctx.rep.emit({ suite: "sampling", test: "decode", shape: shape.name, batch: B, mode, skipped: "deadline" });
          continue;
        }
        const seqs = Array.from({ length: B }, (_, i) => new Sequence(randomIds(o.promptLen, ctx.seed * 1000 + B * 7 + i, e.cfg.vocab), {
          maxTokens: o.tokens,
          sampling: GREEDY,
          ignoreEos: true,
          logprobs: mode.includes("logprobs") ? 20 : undefined,
          constraint: mode.includes("constrained") ? allowAll(e.cfg.vocab) : undefined,
        }));
        const r = await runTimed(e, seqs);
        const tokS = (1000 * r.decoded) / r.decodeMs;
        ctx.rep.emit({ suite: "sampling", test: "decode", shape: shape.name, batch: B, mode, lookahead: e.opts.lookahead, decode_tok_s: round(tokS, 1), step_ms: round(r.decodeMs / (r.decoded / B), 3), truncated: r.truncated });
      }
    }
  } finally {
    e.destroy();
  }
}
