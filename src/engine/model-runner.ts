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
   * in flight), and starts their readback.
   */
  submitRound(batch: Sequence[], k: number, ahead: number): Round {
    const B = batch.length;
    const te = performance.now();
    this.model.reserveHistory(k * B);
    for (let j = 0; j < k; j++) {
      this.model.step({
        seqs: batch.map((s) => ({
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
        histOffset: j * B,
      });
    }
    for (const s of batch) {
      s.numWrittenTokens += k;
      s.stepsSinceCompress += k;
    }
    // the copy is queued now, before any later step can overwrite the history
    const hist = this.readSampled(batch, k * B);
    hist.catch(() => {}); // a round nobody reads any more (its sequences all ended) must not raise
    this.stats.encodeMs += performance.now() - te;
    this.stats.decodeSteps += k;
    return { batch, k, hist, lastStep: this.model.steps };
  }

  /** Reads `rows` sampled tokens, and their logprobs when a sequence of `seqs` asked (both maps overlap). */
  private async readSampled(seqs: Sequence[], rows: number): Promise<Sampled> {
    const lp = seqs.some((s) => s.opts.logprobs != null) ? this.model.readLogprobs(rows) : null;
    const [tokens, logprobs] = await Promise.all([this.model.readHistory(rows), lp]);
    return { tokens, logprobs };
  }
}
