// ModelRunner: turns what the scheduler chose into model steps. A prefill step
// feeds input chunks from the host; a decode round submits `k` steps back to back,
// each feeding on the previous step's GPU-sampled tokens, and reads their tokens
// back in one map (Deno's mapAsync costs ~10 ms; this hides it).
import type { LlamaModel } from "../model/llama.ts";
import type { PrefillChunk } from "./scheduler.ts";
import type { Sequence } from "./sequence.ts";
import type { EngineStats } from "./stats.ts";

/** Sampled tokens read back: one per (step, sequence) row, and their logprobs rows when any sequence asked. */
export interface Sampled {
  tokens: Uint32Array;
  /** kernels/logprobs.wgsl's rows (src/model/token-logprobs.ts), null when no sequence asked */
  logprobs: Uint32Array | null;
}

/** Decode steps on the GPU whose sampled tokens are not read yet. */
export interface Round {
  batch: Sequence[];
  k: number;
  /** rows[b]: the readback rows of batch[b]'s tokens, one per step it took (a constrained sequence takes one) */
  rows: number[][];
  hist: Promise<Sampled>;
  /** the model's step count after the round's last step */
  lastStep: number;
}

export class ModelRunner {
  constructor(
    readonly model: LlamaModel,
    private stats: EngineStats,
  ) {}

  /** Steps submitted so far; a round may follow another on the GPU only while this has not moved. */
  get steps(): number {
    return this.model.steps;
  }

  /** One prefill step of `plan`; resolves to each sequence's sampled token (used once its prefill is whole). */
  prefill(plan: PrefillChunk[]): Promise<Sampled> {
    this.model.reserveHistory(plan.length);
    this.model.step({
      seqs: plan.map(({ seq, n, scoreRows }) => ({
        seq: seq.cache!,
        tokens: seq.input.slice(seq.numComputedTokens, seq.numComputedTokens + n),
        n,
        pos0: seq.numComputedTokens,
        sampling: seq.opts.sampling,
        counter: seq.output.length,
        scoreRows,
        fixedSplits: seq.opts.batchInvariant,
        logprobs: seq.opts.logprobs,
        mask: seq.mask ?? undefined,
      })),
      tokensFromGpu: false,
      histOffset: 0,
    });
    return this.readSampled(plan.map((c) => c.seq), plan.length);
  }

  /**
   * Submits k decode steps of `batch`, each feeding on the previous step's GPU-sampled
   * tokens (the first too when `ahead` > 0: it follows a round of `ahead` steps still
   * in flight), and starts their readback. A grammar-constrained sequence takes the
   * first step only (its next mask needs this token): the batch is ordered with those
   * last, so the later steps' batch is a prefix of the first's and reads its samples in
   * the same rows, and the other sequences keep their k steps.
   */
  submitRound(batch: Sequence[], k: number, ahead: number): Round {
    batch = [...batch.filter((s) => !s.opts.constraint), ...batch.filter((s) => s.opts.constraint)];
    if (!batch.some((s) => !s.opts.constraint)) k = 1;
    const stepsOf = (s: Sequence) => (s.opts.constraint ? 1 : k);
    const te = performance.now();
    const rows: number[][] = batch.map(() => []);
    let nRows = 0;
    for (const s of batch) nRows += stepsOf(s);
    this.model.reserveHistory(nRows);
    let histOffset = 0;
    for (let j = 0; j < k; j++) {
      const stepBatch = batch.filter((s) => stepsOf(s) > j);
      stepBatch.forEach((_, b) => rows[b].push(histOffset + b));
      this.model.step({
        seqs: stepBatch.map((s) => ({
          seq: s.cache!,
          tokens: [s.output[s.output.length - 1]],
          n: 1,
          pos0: s.prompt.length + s.output.length - 1 + ahead + j,
          sampling: s.opts.sampling,
          counter: s.output.length + ahead + j,
          scoreRows: s.continual ? 1 : 0,
          fixedSplits: s.opts.batchInvariant,
          logprobs: s.opts.logprobs,
          mask: s.mask ?? undefined,
        })),
        tokensFromGpu: ahead > 0 || j > 0,
        histOffset,
      });
      histOffset += stepBatch.length;
    }
    for (const s of batch) {
      s.numWrittenTokens += stepsOf(s);
      s.stepsSinceCompress += stepsOf(s);
    }
    // the copy is queued now, before any later step can overwrite the history
    const hist = this.readSampled(batch, nRows);
    hist.catch(() => {}); // a round nobody reads any more (its sequences all ended) must not raise
    this.stats.encodeMs += performance.now() - te;
    this.stats.decodeSteps += k;
    return { batch, k, rows, hist, lastStep: this.model.steps };
  }

  /** Reads `rows` sampled tokens, and their logprobs when a sequence of `seqs` asked (both maps overlap). */
  private async readSampled(seqs: Sequence[], rows: number): Promise<Sampled> {
    const lp = seqs.some((s) => s.opts.logprobs != null) ? this.model.readLogprobs(rows) : null;
    const [tokens, logprobs] = await Promise.all([this.model.readHistory(rows), lp]);
    return { tokens, logprobs };
  }
}
