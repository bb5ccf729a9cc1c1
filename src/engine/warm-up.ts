// Warm-up: the first request after a start should not pay for compiling pipelines.
// Drivers compile a pipeline when it is first dispatched (lavapipe: about 3.5 s each
// on two cores, 42.7 s for a first chat), so creating them is not enough: the warm-up
// runs small synthetic requests through the engine that reach every kernel variant a
// request can: prefill steps of few rows (GEMV) and many (both GEMM tiles, split and
// scoring attention), decode rounds at each GEMV batch tile and past the GEMV,
// compression on the GPU planner (short and long heads) and on the host, and the
// batch-invariant (seeded) attention splits.
import { GEMV_MAX_ROWS } from "../model/gemv.ts";
import { GEMM_SMALL_ROWS } from "../model/gemm.ts";
import { rankSizes } from "../cache/gpu-planner.ts";
import type { CompressionOptions } from "../cache/compression.ts";
import { Sequence } from "./sequence.ts";

export interface WarmUpPhase {
  name: string;
  seqs: Sequence[];
}

/** What the plan is sized from. */
export interface WarmUpShape {
  maxContext: number;
  vocab: number;
  maxSeqs: number;
  lookahead: number;
  prefillChunk: number;
  /** the adapter's maxComputeWorkgroupStorageSize (sizes the planner's workgroup sort) */
  maxWorkgroupBytes: number;
}

const GREEDY = { temperature: 0, topP: 1, topK: 0, seed: 0 };

/** The phases, in order; each phase's sequences run together. */
export function warmUpPhases(s: WarmUpShape): WarmUpPhase[] {
  // tokens away from 0 and 1 (BOS/EOS in most vocabularies); the EOS is ignored anyway
  const prompt = (n: number, salt = 0) => Array.from({ length: n }, (_, i) => 2 + ((i * 7919 + salt * 104729) % (s.vocab - 2)));
  // enough steps for a round that follows another on the GPU, and a compression at interval 4
  const steps = 2 * s.lookahead + 5;
  const seq = (n: number, salt: number, compression: Partial<CompressionOptions> = {}, extra: Partial<ConstructorParameters<typeof Sequence>[1]> = {}) =>
    new Sequence(prompt(n, salt), { maxTokens: steps, sampling: GREEDY, ignoreEos: true, compression, ...extra });
  const fits = (n: number) => Math.max(2, Math.min(n, s.maxContext - steps - 1));
  const batch = (b: number) => Array.from({ length: Math.min(b, s.maxSeqs) }, (_, i) => seq(1, i + 1));
  const phases: WarmUpPhase[] = [
    // decode batches: the GEMV's batch tiles (1, 2, 3-4, 5 and up), then past the GEMV
    ...[1, 2, 4, 8].map((b) => ({ name: `decode batch ${b}`, seqs: batch(b) })),
  ];
  if (s.maxSeqs > GEMV_MAX_ROWS) phases.push({ name: `decode batch ${GEMV_MAX_ROWS + 1}`, seqs: batch(GEMV_MAX_ROWS + 1) });
  // tiled prefill attention without scores (a step scores when any of its prompts does),
  // at the most rows of the small GEMM tiles (127: two tensor-core tiles of 64, the least split-K)
  phases.push({ name: `prefill ${GEMM_SMALL_ROWS - 1} tokens`, seqs: [seq(fits(GEMM_SMALL_ROWS - 1), 95)] });
  // a long prompt: full chunks (the f32 GEMM's large tiles; tensor cores' large tiles with the
  // least split-K), then a last chunk of GEMM_SMALL_ROWS rows (their large tiles with the most
  // split-K; which matrices split depends on the rows, so both ends are met); attention
  // over many keys, scoring, and heads that outgrow the planner's workgroup sort where the
  // context allows (past it no head can)
  const past = rankSizes(s.maxWorkgroupBytes).sortPairs + 64;
  const full = Math.ceil(Math.max(s.prefillChunk, past < s.maxContext - steps ? past : 0) / s.prefillChunk) * s.prefillChunk;
  const long = fits(full + GEMM_SMALL_ROWS);
  phases.push({ name: `prefill ${long} tokens, kvcompress`, seqs: [seq(long, 90, { method: "kvcompress", rate: 2, interval: 4 })] });
  phases.push({
    name: "snapkv, streaming, kvcrush",
    seqs: [
      seq(fits(96), 91, { method: "snapkv", rate: 2, interval: 4 }),
      seq(fits(96), 92, { method: "streaming", maxCacheTokens: 16, interval: 4 }),
      seq(fits(96), 93, { method: "kvcrush", rate: 2, interval: 4 }),
    ],
  });
  // a seeded request: prefilled alone, decode attention split at fixed offsets
  phases.push({ name: "seeded", seqs: [seq(fits(600), 94, {}, { batchInvariant: true, sampling: { temperature: 1, topP: 0.9, topK: 40, seed: 7 } })] });
  return phases;
}
