// Scheduler: which sequences run in the next step, and how far. It keeps the
// waiting and running queues, admits by free blocks, cuts prefill chunks, sizes
// decode rounds and picks whom to preempt; the engine executes what it returns.
import type { KvCache, SeqCache } from "../cache/kv-cache.ts";
import type { ModelConfig } from "../model/config.ts";
import type { PrefixSharing } from "./prefix-sharing.ts";
import type { Sequence } from "./sequence.ts";
import type { EngineStats } from "./stats.ts";

/** One sequence's part of a prefill step: `n` tokens of its input, the last `scoreRows` of which score the cache. */
export interface PrefillChunk {
  seq: Sequence;
  n: number;
  scoreRows: number;
}

export class Scheduler {
  readonly waiting: Sequence[] = [];
  readonly running: Sequence[] = [];

  constructor(
    private cache: KvCache,
    private cfg: ModelConfig,
    private opts: { prefillChunk: number; lookahead: number },
    private stats: EngineStats,
    private sharing: PrefixSharing,
  ) {}

  get idle(): boolean {
    return this.waiting.length === 0 && this.running.length === 0;
  }

  /**
   * Admission by free blocks: a new sequence starts only when its whole prefill fits
   * beside a block per head for every running sequence (it compresses only once the
   * prefill ends), unless nothing else runs. Cached prompt blocks that others hold
   * already cost it nothing (idle cached ones count among the free).
   */
  private admits(seq: Sequence): boolean {
    const need = this.cache.blocksFor(seq.input.length) - this.sharing.heldBlocksFor(seq);
    return this.cache.pool.numFreeBlocks >= need + this.cache.heads * this.running.length;
  }

  /** Whether a prefill step would start or go on with a waiting sequence now. */
  prefillReady(): boolean {
    const seq = this.waiting.find((s) => !s.finished);
    if (!seq) return false;
    return seq.cache !== null || this.running.length === 0 || (this.cache.freeSeqSlots > 0 && this.admits(seq));
  }

  /**
   * The next prefill step: chunks of the first waiting sequence(s) within
   * `prefillChunk` tokens, each with its cache opened and room reserved. Empty when
   * nothing can start. A prompt the pool cannot hold even alone is finished
   * ("length") and the step throws.
   */
  schedulePrefill(): PrefillChunk[] {
    const plan: PrefillChunk[] = [];
    let budget = this.opts.prefillChunk;
    for (const seq of [...this.waiting]) {
      if (budget <= 0) break;
      if (seq.finished) {
        this.waiting.splice(this.waiting.indexOf(seq), 1);
        continue;
      }
      // a batch-invariant sequence shares its prefill steps with no other prompt
      if (plan.length && (seq.opts.batchInvariant || plan[0].seq.opts.batchInvariant)) break;
      const alone = this.running.length === 0 && plan.length === 0;
      if (!seq.cache && !alone && !this.admits(seq)) break;
      const cache = seq.cache ?? this.openCache(seq);
      if (!cache) break; // every table slot is taken
      const { n, scoreRows } = this.prefillChunk(seq, budget);
      if (!this.cache.reserve(cache, n)) {
        if (seq.numComputedTokens === 0 && alone) {
          this.cache.release(cache);
          seq.cache = null;
          this.waiting.splice(this.waiting.indexOf(seq), 1);
          seq.finish("length");
          throw new Error(`KV cache too small for a ${seq.input.length}-token prompt; raise --kv-memory`);
        }
        break;
      }
      plan.push({ seq, n, scoreRows });
      budget -= n;
    }
    return plan;
  }

  /** Opens a sequence's cache with what the prefix cache holds of its input; null when every table slot is taken. */
  openCache(seq: Sequence): SeqCache | null {
    seq.cache = this.cache.open();
    if (seq.cache) this.sharing.attach(seq);
    return seq.cache;
  }

  /**
   * The next prefill chunk of `seq` within `budget` tokens. A chunk never crosses the
   * point where compression runs, and the chunk that reaches it holds the whole
   * observation window, whose queries score the cached keys.
   */
  private prefillChunk(seq: Sequence, budget: number): { n: number; scoreRows: number } {
    const left = seq.input.length - seq.numComputedTokens;
    const w = seq.compression.observationWindow;
    if (!seq.compressing) return { n: Math.min(budget, left), scoreRows: 0 };
    if (seq.numComputedTokens >= seq.compressAt) {
      // past the first compression (query-agnostic question): continual mode keeps scoring
      const n = Math.min(budget, left);
      return { n, scoreRows: seq.continual ? n : 0 };
    }
    const rem = seq.compressAt - seq.numComputedTokens;
    if (rem <= budget) return { n: rem, scoreRows: Math.min(w, rem) };
    return { n: Math.max(1, Math.min(budget, rem - w)), scoreRows: 0 };
  }

  /**
   * A prefilled n > 1 parent: its choices take its place in the queue, in the prefix
   * cache's namespace it filled, each holding its blocks at once where a table slot is
   * free. Choices that compress copy what they reuse: they wait for admission instead.
   */
  branch(parent: Sequence) {
    const choices = parent.opts.choices!.filter((c) => !c.finished);
    this.waiting.splice(this.waiting.indexOf(parent), 1, ...choices);
    for (const c of choices) {
      c.prefixSalt = parent.prefixSalt;
      c.prefixQueried = true;
      c.cachedTokens = parent.cachedTokens;
      if (this.cache.freeSeqSlots > 0 && !c.compressing) this.openCache(c);
    }
  }

  /** A sequence whose prefill ended starts decoding. */
  promote(seq: Sequence) {
    this.waiting.splice(this.waiting.indexOf(seq), 1);
    this.running.push(seq);
  }

  /** Takes a sequence out of both queues (it finished or was aborted). */
  remove(seq: Sequence) {
    const w = this.waiting.indexOf(seq);
    if (w >= 0) this.waiting.splice(w, 1);
    const r = this.running.indexOf(seq);
    if (r >= 0) this.running.splice(r, 1);
  }

  /**
   * Steps a round of `batch` may take once `ahead` more are done (at most `lookahead`,
   * 0 or less when one of them is done): up to each sequence's token and context
   * limits, and never past its next compression (continual mode).
   */
  roundSteps(batch: Sequence[], ahead: number): number {
    let k = this.opts.lookahead;
    for (const s of batch) {
      // a grammar's next mask needs the last token: such a sequence takes the first step
      // of a round only (ModelRunner.submitRound), and no round goes in ahead of its tokens
      if (s.opts.constraint && ahead > 0) k = 0;
      const out = s.output.length + ahead;
      k = Math.min(k, s.opts.maxTokens - out, this.cfg.maxContext - (s.prompt.length + out));
      if (s.continual) k = Math.min(k, s.compression.interval - s.stepsSinceCompress);
    }
    return k;
  }

  /** Room for k more tokens in every sequence of `batch` (reservations made stay). */
  reserveAll(batch: Sequence[], k: number): boolean {
    return batch.every((s) => this.cache.reserve(s.cache!, k));
  }

  /** Sequences of `batch` whose continual compression is due. */
  dueToCompress(batch: Sequence[]): Sequence[] {
    return batch.filter((s) => !s.finished && s.continual && s.stepsSinceCompress >= s.compression.interval);
  }

  /** Running sequences that could shrink by compressing before anyone is preempted. */
  compressible(): Sequence[] {
    return this.running.filter((o) => o.compressing && !o.finished && o.stepsSinceCompress > 0);
  }

  /**
   * Makes room for k more tokens of `s` by preemption (recompute), newest first: a
   * half-prefilled waiting sequence before any running one. Returns false when `s`
   * alone cannot fit (the caller finishes it).
   */
  preemptFor(s: Sequence, k: number): boolean {
    while (s.cache && !this.cache.reserve(s.cache, k)) {
      const victim = lastOf(this.waiting, (w) => w.cache !== null) ?? lastOf(this.running, (r) => !r.finished && r !== s) ?? s;
      if (victim === s && this.running.length === 1) return false;
      this.preempt(victim);
    }
    return true;
  }

  /** Gives a sequence's blocks back; it waits at the front of the queue to be recomputed. */
  private preempt(seq: Sequence) {
    this.remove(seq);
    if (seq.cache) this.cache.release(seq.cache);
    seq.cache = null;
    seq.resetForRecompute();
    this.waiting.unshift(seq);
    this.stats.preemptions++;
  }
}

function lastOf<T>(xs: T[], ok: (x: T) => boolean): T | undefined {
  for (let i = xs.length - 1; i >= 0; i--) if (ok(xs[i])) return xs[i];
  return undefined;
}
