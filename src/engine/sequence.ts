// Sequence: one request's tokens and progress through prefill and decode.
import type { KvCache, SeqCache } from "../cache/kv-cache.ts";
import type { Sampling } from "../model/llama.ts";
import type { HeadsMap } from "../cache/cache-map.ts";
import { DEFAULT_COMPRESSION, type CompressionOptions, type KvStats } from "../cache/compression.ts";
import type { TokenLogprobs } from "../model/token-logprobs.ts";

/**
 * What a grammar allows next (constrained decoding): the engine asks for the mask
 * before each step that samples for the sequence and tells it each token taken. Such
 * a sequence decodes one step per round, since its next mask needs its last token.
 */
export interface TokenConstraint {
  /** allowed next tokens, bit i % 32 of word i / 32 (ceil(vocab / 32) words) */
  nextMask(): Promise<Uint32Array>;
  /** takes a sampled token; false if the grammar refuses it */
  accept(id: number): boolean;
  /** the grammar is complete: nothing may follow */
  readonly terminated: boolean;
}

export type FinishReason = "stop" | "length" | "abort";

export interface SequenceOptions {
  maxTokens: number;
  sampling: Sampling;
  ignoreEos: boolean;
  /** called with each generated token id as soon as the host knows it (and its logprobs when asked) */
  onToken?: (id: number, logprobs?: TokenLogprobs) => void;
  /** log-probabilities of each token and this many alternatives (0-20); absent: none */
  logprobs?: number;
  /** constrained decoding: only tokens this grammar allows are sampled */
  constraint?: TokenConstraint;
  /** keep the first-step logits (tests, evaluation) */
  captureLogits?: boolean;
  /**
   * Keep this sequence's logits independent of the sequences beside it, so a seeded
   * sampled answer is the same alone or under load: its prompt is prefilled in steps
   * of its own (beside others it would run other kernels and splits, the GEMM past 32
   * rows and tiled attention), and decode attention splits its keys at fixed offsets
   * while it runs. Rounding differences would otherwise stay in the f16 cache and
   * move a sampled token now and then. Up to 32 sequences decoding at once (past that
   * the batch runs the GEMM) and unless preempted (recompute runs the prefill kernels).
   */
  batchInvariant?: boolean;
  /** KV compression for this sequence (default: none) */
  compression?: Partial<CompressionOptions>;
  /**
   * prompt tokens after which the first compression runs (default: the whole
   * prompt). Query-agnostic evaluation sets it to the context length, so the
   * question is fed only after the context was compressed.
   */
  compressAt?: number;
  /**
   * Evaluation: sequences with this prompt and compressAt but compression of their own.
   * When this one reaches compressAt, before it compresses, each takes a copy of its
   * cache and goes on alone: one prefill, several compression settings. The engine
   * runs them; they are not added themselves.
   */
  forks?: Sequence[];
  /** keep a map of the cache in this many bins as the sequence ends (finalMap; src/cache/cache-map.ts) */
  mapAtRelease?: number;
  /**
   * Where the prompt's reusable prefix ends (chat: where the final user turn starts;
   * default: before the last token). With compression.cachePrefix the engine
   * compresses the whole blocks before it once, query-agnostically (cachePrefixAt).
   */
  prefixEnd?: number;
  /**
   * n > 1: sequences with this prompt that go on from this one's prefill. This one
   * only prefills (the prompt's full blocks but the last token's) and caches them;
   * each of them then holds those blocks and prefills the rest itself.
   */
  choices?: Sequence[];
}

let nextId = 1;

export class Sequence {
  readonly id = nextId++;
  readonly output: number[] = [];
  /** tokens of `input` whose K/V are in the cache (how far the prefill got) */
  numComputedTokens = 0;
  /** positions whose K/V were written: prefill and decode steps, lookahead overshoot included */
  numWrittenTokens = 0;
  cache: SeqCache | null = null;
  finishReason: FinishReason | null = null;
  firstLogits: Float32Array | null = null;
  readonly compression: CompressionOptions;
  /** K/V entries evicted so far, summed over every (layer, KV head) */
  evictedTokens = 0;
  /** decode steps since the last compression (continual mode) */
  stepsSinceCompress = 0;
  compressions = 0;
  /** prompt tokens after which the first compression runs */
  compressAt: number;
  /** tokens to prefill: the prompt, or prompt + output after a preemption */
  input: number[];
  preemptions = 0;
  /** the constraint's mask for the next token, fetched before a step samples it */
  mask: Uint32Array | null = null;
  /**
   * Namespace of the prefix cache this sequence reads and fills (null: none). Set by
   * the engine: "" for the shared one; an n > 1 group's own when caching is off.
   */
  prefixSalt: string | null | undefined = undefined;
  /** chained hashes of the full blocks of `input` computed so far (prefix-cache.ts) */
  blockHashes: string[] = [];
  /** full blocks of `input` handed to the prefix cache */
  cachedBlocks = 0;
  /** prompt tokens the first prefill found cached (usage.prompt_tokens_details.cached_tokens) */
  cachedTokens = 0;
  /**
   * kv_compression.cache_prefix: prompt tokens (whole blocks) compressed once,
   * query-agnostically (compressAt is there), whose compressed state is cached for
   * later sequences with the same prefix and settings; 0: none. Set by the engine.
   */
  cachePrefixAt = 0;
  /** the n > 1 parent whose prefill this sequence goes on from (SequenceOptions.choices) */
  parent: Sequence | null = null;
  /** whether the prefix cache was asked for this sequence (vllm:prefix_cache_queries_total) */
  prefixQueried = false;
  /** cache figures, kept current while running and frozen at release */
  kv: KvStats = { blocksUsed: 0, blocksUncompressed: 0, tokensKept: 0, contextTokens: 0, compressionRate: 1, evictedTokens: 0 };
  /** the cache's map as it was released, when opts.mapAtRelease asked for one */
  finalMap: HeadsMap | null = null;
  private done: Promise<void>;
  private resolveDone!: () => void;

  constructor(readonly prompt: number[], readonly opts: SequenceOptions) {
    this.compression = { ...DEFAULT_COMPRESSION, ...opts.compression };
    this.compressAt = Math.min(prompt.length, Math.max(1, opts.compressAt ?? prompt.length));
    this.input = prompt;
    this.done = new Promise((r) => (this.resolveDone = r));
  }

  get prefilled(): boolean {
    return this.numComputedTokens >= this.input.length;
  }
  /**
   * Positions whose K/V the sequence needs: once decoding, prompt and output but the
   * newest output token (not written yet); before, what the prefill computed.
   * numWrittenTokens may run past it by the lookahead steps after the end.
   */
  get numContextTokens(): number {
    return this.prefilled && this.output.length > 0 ? this.prompt.length + this.output.length - 1 : this.numComputedTokens;
  }

  /**
   * Preempted: its blocks were taken back. It will prefill prompt + output again
   * (recompute) and go on decoding where it stopped; compression runs once that
   * prefill ends.
   */
  resetForRecompute() {
    this.input = this.prompt.concat(this.output);
    this.numComputedTokens = 0;
    this.numWrittenTokens = 0;
    this.cachedBlocks = 0;
    this.stepsSinceCompress = 0;
    // a sequence that had started decoding compresses once its recompute ends; one
    // still in its prompt keeps its own point (query-agnostic evaluation sets it)
    if (this.output.length) this.compressAt = this.input.length;
    this.evictedTokens = 0;
    this.preemptions++;
  }
  get finished(): boolean {
    return this.finishReason !== null;
  }
  get compressing(): boolean {
    return this.compression.method !== "none";
  }
  /** scores accumulate during decode and compression repeats every `interval` steps */
  get continual(): boolean {
    return this.compressing && !this.compression.compressOnce;
  }

  finish(reason: FinishReason) {
    if (this.finishReason) return;
    this.finishReason = reason;
    this.resolveDone();
  }
  wait(): Promise<void> {
    return this.done;
  }
}

/** A sequence's cache figures now: what it holds against what it would hold uncompressed. */
export function kvStatsOf(cache: KvCache, seq: Sequence): KvStats {
  if (!seq.cache) return seq.kv;
  const context = Math.min(seq.numWrittenTokens, seq.numContextTokens);
  const blocksUsed = cache.blocksUsed(seq.cache);
  const blocksUncompressed = cache.blocksFor(context);
  return {
    blocksUsed,
    blocksUncompressed,
    tokensKept: cache.tokensKept(seq.cache),
    contextTokens: context,
    compressionRate: blocksUsed ? blocksUncompressed / blocksUsed : 1,
    evictedTokens: seq.evictedTokens,
  };
}
