// Warm-up: the first request after a start should not pay for compiling pipelines.
// Drivers compile a pipeline when it is first dispatched (lavapipe: about 3.5 s each
// on two cores, 42.7 s for a first chat), so creating them is not enough: the warm-up
// runs small synthetic requests through the engine that reach every kernel variant a
// request can: prefill steps of few rows (GEMV) and many (both GEMM tiles, split and
// scoring attention), decode rounds at each batch size whose matmuls differ (GEMV tiles,
// tensor-core kernels),
// compression on the GPU planner (short and long heads) and on the host, and the
// batch-invariant (seeded) attention splits.
import { GEMV_MAX_ROWS, gemvTileFor, gemvTileName } from "../model/gemv.ts";
import { GEMM_SMALL_ROWS, SKINNY_MAX_ROWS, skinnyTM } from "../model/gemm.ts";
import type { LlamaModel } from "../model/llama.ts";
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
  /** names the matmul kernels a step of M rows runs (matmulKind): decode batches differ where it does */
  matmulKind: (M: number) => string;
}

/**
 * The matmul kernels of a step of M rows, as the model picks them: the tensor-core kernel
 * (gemm_mma_skinny's row tile mirrors skinnyKernel's), the f32 GEMM past the GEMV, or the
 * GEMV's batch tiles (plain, normed, normed SwiGLU).
 */
export function matmulKind(model: Pick<LlamaModel, "mmaAt" | "skinny">, M: number, maxStorage: number, subgroups: boolean): string {
  const tc = model.mmaAt(M);
  if (tc) return model.skinny && M <= SKINNY_MAX_ROWS ? `skinny TM${skinnyTM(M)}` : tc.name;
  if (M > GEMV_MAX_ROWS) return "gemm";
  return [gemvTileFor(M, false, maxStorage, subgroups), gemvTileFor(M, true, maxStorage, subgroups), gemvTileFor(M, true, maxStorage, subgroups, true)].map(gemvTileName).join(" ");
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
  // decode batches: the smallest of each size whose matmuls differ (GEMV tiles 1, 2, 3-4 and
  // 5 up; the tensor-core kernels; the GEMM past the GEMV); their prompts prefill as many rows
  const kinds = new Set<string>();
  const phases: WarmUpPhase[] = [];
  for (let b = 1; b <= s.maxSeqs; b++) {
    const kind = s.matmulKind(b);
    if (kinds.has(kind)) continue;
    kinds.add(kind);
    phases.push({ name: `decode batch ${b}`, seqs: batch(b) });
  }
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
