// Engine: owns the GPU, model, cache and tokenizer, and runs sequences to
// completion, one `step()` at a time. The rooms (vLLM v1's split):
//   Scheduler (scheduler.ts)      who runs next and how far: admission, prefill
//                                 chunks, round sizes, preemption
//   Compressor (compressor.ts)    scores -> plan -> compaction, per sequence
//   ModelRunner (model-runner.ts) prefill steps and decode rounds on the model
//   Engine (here)                 the loop: a step prefills a chunk of waiting
//                                 prompts or runs a decode round, then takes its tokens
// A decode round is `lookahead` steps submitted back to back; while one runs the next
// is already queued behind it, so the GPU does not wait for the readback or for the
// host to record the next round. Serving drives it through EngineClient (client.ts).
// Long file: the loop's parts (prefill steps with their forks and n > 1 choices, decode
// rounds that chain behind each other, token intake, aborts applied between steps) share its state.
import { createGpu, describeGpu, type Gpu } from "../gpu/device.ts";
import { KernelContext } from "../gpu/kernels.ts";
import { BlockPool } from "../cache/block-pool.ts";
import { KvCache } from "../cache/kv-cache.ts";
import { CacheMapper, type HeadsMap } from "../cache/cache-map.ts";
import type { ModelConfig } from "../model/config.ts";
import { openModel } from "../model/model-files.ts";
import { quantizeWeights, type OnLoadQuant } from "../model/quantize-weights.ts";
import { loadWeights, destroyWeights, type ModelWeights } from "../model/weights.ts";
import { LlamaModel } from "../model/llama.ts";
import { TextTokenizer } from "../model/tokenizer.ts";
import type { CompressionOptions, KvStats } from "../cache/compression.ts";
import { Compressor } from "./compressor.ts";
import { ModelRunner, type Round } from "./model-runner.ts";
import { perplexity } from "./perplexity.ts";
import { PrefixSharing } from "./prefix-sharing.ts";
import { checkPrompt } from "./prompt-check.ts";
import { Scheduler } from "./scheduler.ts";
import { kvStatsOf, Sequence, type FinishReason } from "./sequence.ts";
import { newEngineStats } from "./stats.ts";
import { readTokenLogprobs } from "../model/token-logprobs.ts";
import type { Sampled } from "./model-runner.ts";
import type { EngineLimits } from "./client.ts";

export interface EngineOptions {
  /** KV memory budget in bytes (K, V and positions of all blocks) */
  kvMemory?: number;
  blockSize?: number;
  /** decode steps submitted per readback */
  lookahead?: number;
  /** most prompt tokens per prefill step */
  prefillChunk?: number;
  maxSeqs?: number;
  /** caps a storage binding below the adapter's limit (exercises weight sharding) */
  maxBindingBytes?: number;
  /** quantize f16 weights on the GPU as they load (src/model/quantize-weights.ts) */
  quantize?: OnLoadQuant;
  /** plan kvcompress / snapkv evictions on the GPU (default); false plans every policy on the host */
  gpuPlanner?: boolean;
  /** automatic prefix caching (default on): requests reuse the K/V of cached prompt blocks */
  prefixCaching?: boolean;
  log?: (msg: string) => void;
}

export class Engine {
  /** counters for benchmarks and tests (stats.ts) */
  readonly stats = newEngineStats();
  readonly scheduler: Scheduler;
  readonly sharing: PrefixSharing;
  private compressor: Compressor;
  private runner: ModelRunner;
  private mapper: CacheMapper;
  private stepping: Promise<void> | null = null;
  /** a decode round submitted ahead, whose tokens the next decode round reads */
  private inflight: Round | null = null;
  /** aborts asked for while a step ran, applied when it ends */
  private aborts: [Sequence, FinishReason][] = [];

  private constructor(
    readonly gpu: Gpu,
    readonly kc: KernelContext,
    readonly cfg: ModelConfig,
    readonly weights: ModelWeights,
    readonly cache: KvCache,
    readonly model: LlamaModel,
    readonly tokenizer: TextTokenizer,
    readonly opts: Required<Omit<EngineOptions, "log" | "kvMemory" | "maxBindingBytes" | "quantize">>,
  ) {
    this.sharing = new PrefixSharing(kc, cache);
    this.scheduler = new Scheduler(cache, cfg, opts, this.stats, this.sharing);
    const limits = gpu.limits;
    this.compressor = new Compressor(kc, cache, cfg, { gpuPlanner: opts.gpuPlanner, maxWorkgroupBytes: limits.maxComputeWorkgroupStorageSize, maxBindingBytes: limits.maxStorageBufferBindingSize }, this.stats);
    this.runner = new ModelRunner(model, this.stats);
    this.mapper = new CacheMapper(kc, cache);
  }

  /** An engine over an HF folder or a GGUF file (src/model/model-files.ts). */
  static async load(path: string, o: EngineOptions = {}): Promise<Engine> {
    const m = await openModel(path);
    return Engine.create(m.cfg, m.tokenizer, (gpu, kc) => {
      const w = loadWeights(gpu, kc, m.tensors, m.source, m.cfg);
      return o.quantize ? quantizeWeights(kc, w, o.quantize) : w;
    }, o);
  }

  /** An engine over weights that `makeWeights` puts on the GPU (benchmarks: random ones at a real shape). */
  static async create(cfg: ModelConfig, tokenizer: TextTokenizer, makeWeights: (gpu: Gpu, kc: KernelContext) => ModelWeights, o: EngineOptions = {}): Promise<Engine> {
    const log = o.log ?? (() => {});
    const gpu = await createGpu();
    if (o.maxBindingBytes) gpu.limits.maxStorageBufferBindingSize = Math.min(gpu.limits.maxStorageBufferBindingSize, o.maxBindingBytes);
    log(`adapter: ${describeGpu(gpu)}`);
    try {
      const kc = new KernelContext(gpu);
      const weights = makeWeights(gpu, kc);
      const blockSize = o.blockSize ?? 16;
      const perBlock = BlockPool.bytesPerBlock(blockSize, cfg.headDim);
      // K and V each live in one binding, so the binding limit caps the pool too.
      const bindCap = Math.floor(gpu.limits.maxStorageBufferBindingSize / (blockSize * cfg.headDim * 2));
      const budget = o.kvMemory ?? Math.min(1 * 2 ** 30, 2 * gpu.limits.maxStorageBufferBindingSize);
      const numBlocks = Math.min(Math.floor(budget / perBlock), bindCap);
      const maxSeqs = o.maxSeqs ?? 64;
      const cache = new KvCache(gpu.device, {
        layers: cfg.layers,
        kvHeads: cfg.kvHeads,
        headDim: cfg.headDim,
        blockSize,
        numBlocks,
        maxSeqLen: cfg.maxContext,
        maxSeqs,
      });
      const model = new LlamaModel(gpu, kc, cfg, weights, cache);
      log(`model: ${cfg.arch} ${cfg.layers} layers, hidden ${cfg.hidden}, ${cfg.heads}/${cfg.kvHeads} heads, vocab ${cfg.vocab}, ${(weights.bytes / 2 ** 20).toFixed(1)} MiB on GPU`);
      log(`kv cache: ${numBlocks} blocks x ${blockSize} tokens per (layer, kv head) = ${Math.floor((numBlocks * blockSize) / (cfg.layers * cfg.kvHeads))} tokens of full-size context, ${((numBlocks * perBlock) / 2 ** 20).toFixed(1)} MiB`);
      return new Engine(gpu, kc, cfg, weights, cache, model, tokenizer, {
        blockSize,
        lookahead: o.lookahead ?? (gpu.runtime === "deno" ? 16 : 4),
        prefillChunk: o.prefillChunk ?? 512,
        maxSeqs,
        gpuPlanner: o.gpuPlanner ?? true,
        prefixCaching: o.prefixCaching ?? true,
      });
    } catch (e) {
      gpu.device.destroy(); // frees whatever was uploaded before the failure
      throw e;
    }
  }

  /** Sequences not started or not done with their prefill (preempted ones first). */
  get waiting(): readonly Sequence[] {
    return this.scheduler.waiting;
  }
  /** Sequences decoding. */
  get running(): readonly Sequence[] {
    return this.scheduler.running;
  }
  get idle(): boolean {
    return this.scheduler.idle;
  }
  /** What a request must stay within (the prompt is checked by `add`). */
  get limits(): EngineLimits {
    const { cfg, cache } = this;
    return { maxContext: cfg.maxContext, vocab: cfg.vocab, layers: cfg.layers, kvHeads: cfg.kvHeads, heads: cache.heads, blockSize: cache.blockSize, numBlocks: cache.pool.numBlocks, maxSeqs: this.opts.maxSeqs };
  }

  /** Throws the PromptError of a prompt `add` would refuse (serving asks before it sizes a request). */
  checkPrompt(prompt: number[], uncompressed = prompt.length) {
    checkPrompt(prompt, uncompressed, this.limits, this.cache);
  }

  /** Queues a sequence; it runs on the next steps. Throws a PromptError (prompt-check.ts) for a prompt it cannot run. */
  add(seq: Sequence) {
    this.checkPrompt(seq.prompt, seq.compressAt);
    this.sharing.prepare(seq, this.opts.prefixCaching);
    for (const f of seq.opts.forks ?? []) {
      // the forks' scores are the parent's: the same queries must have scored the same keys
      const same = f.prompt.length === seq.prompt.length && f.prompt.every((t, i) => t === seq.prompt[i]) && f.compressAt === seq.compressAt;
      if (!same || !seq.compressing || f.compression.observationWindow !== seq.compression.observationWindow) {
        throw new Error("a fork needs its parent's prompt, compressAt and observation window, and a parent that compresses");
      }
    }
    this.scheduler.waiting.push(seq);
  }

  /**
   * Queues the n choices of one prompt (n > 1): a parent prefills the prompt's full
   * blocks but the last token's and caches them, then each choice holds those blocks
   * and prefills the rest itself (at most a block, in a block of its own: copy on write
   * of the partial block). Returns the sequence queued (the parent, or the one choice).
   */
  addChoices(choices: Sequence[]): Sequence {
    for (const c of choices) this.checkPrompt(c.prompt, c.compressAt);
    const parent = this.sharing.choicesParent(choices);
    for (const s of parent ? [parent] : choices) this.add(s);
    return parent ?? choices[0];
  }

  /**
   * Ends a sequence (a client went away: "abort"; a stop string matched: "stop") and
   * frees its blocks. Between steps that happens at once; asked during a step (from
   * an onToken callback, or by a client while the step awaits the GPU) it is queued
   * and applied when the step ends, because the step's bookkeeping after its
   * readback expects its batch as it was.
   */
  abort(seq: Sequence, reason: FinishReason = "abort") {
    if (this.stepping) this.aborts.push([seq, reason]);
    else this.end(seq, reason);
  }

  private end(seq: Sequence, reason: FinishReason) {
    const i = this.scheduler.waiting.indexOf(seq);
    if (i >= 0) this.scheduler.waiting.splice(i, 1);
    seq.finish(reason);
    this.releaseIfDone(seq);
    // forks and choices not taken yet never will be
    for (const f of seq.opts.forks ?? []) if (!f.cache && f.numComputedTokens === 0) f.finish(reason);
    const queued = (c: Sequence) => this.scheduler.waiting.includes(c) || this.scheduler.running.includes(c);
    for (const c of seq.opts.choices ?? []) if (!queued(c)) c.finish(reason);
    // a parent whose choices have all ended has nobody to prefill for
    if (seq.parent && seq.parent.opts.choices!.every((c) => c.finished)) this.end(seq.parent, reason);
  }

  /** Runs steps until every queued sequence has finished. */
  async runUntilIdle() {
    while (!this.idle) await this.step();
  }

  /** Convenience: run one prompt to completion. */
  async generate(prompt: number[], opts: ConstructorParameters<typeof Sequence>[1]): Promise<Sequence> {
    const seq = new Sequence(prompt, opts);
    this.add(seq);
    await this.runUntilIdle();
    return seq;
  }

  /** Teacher-forced negative log-likelihood of tokens[1..] under compression (perplexity.ts); needs an idle engine. */
  async perplexity(tokens: number[], compression: Partial<CompressionOptions> = {}): Promise<{ nll: Float32Array; kv: KvStats }> {
    if (!this.idle) throw new Error("perplexity needs an idle engine");
    if (tokens.length < 2) throw new Error("perplexity needs at least two tokens");
    if (tokens.length > this.cfg.maxContext) throw new Error(`text has ${tokens.length} tokens; the model's context is ${this.cfg.maxContext}`);
    return perplexity({ cache: this.cache, model: this.model, compressor: this.compressor, prefillChunk: this.opts.prefillChunk }, tokens, compression);
  }

  async step(): Promise<void> {
    // steps never overlap: the model's workspace is shared
    while (this.stepping) await this.stepping;
    this.stepping = this.scheduler.waiting.length ? this.prefillStep() : this.decodeRound();
    try {
      await this.stepping;
    } finally {
      this.stepping = null;
      const aborts = this.aborts;
      this.aborts = [];
      for (const [seq, reason] of aborts) this.end(seq, reason);
    }
  }

  /** Prefills what the scheduler chose; sequences whose prefill is whole start decoding. */
  private async prefillStep() {
    const plan = this.scheduler.schedulePrefill();
    if (!plan.length) {
      if (this.scheduler.running.length) return this.decodeRound();
      throw new Error("no sequence can be scheduled: the KV cache is full");
    }
    await this.fetchMasks(plan.map((c) => c.seq));
    const hist = await this.runner.prefill(plan);
    for (const { seq, n } of plan) {
      seq.numComputedTokens += n;
      seq.numWrittenTokens += n;
      this.sharing.register(seq);
    }
    const due = plan.map((c) => c.seq).filter((s) => s.compressing && s.numComputedTokens === s.compressAt);
    const forked = new Map<Sequence, Sequence[]>();
    for (const p of due) {
      if (p.finished || !p.opts.forks) continue; // a cancelled parent's forks were finished with it
      const forks = p.opts.forks.filter((f) => !f.finished);
      for (const f of forks) await this.compressor.fork(p, f);
      forked.set(p, forks);
    }
    await this.compressor.compress(due);
    for (const s of due) this.sharing.storeCompressed(s);
    for (let b = 0; b < plan.length; b++) {
      const seq = plan[b].seq;
      // forks go on alone, also when their parent was cancelled meanwhile
      const forks = forked.get(seq) ?? [];
      if (!seq.prefilled) {
        this.scheduler.waiting.splice(this.scheduler.waiting.indexOf(seq) + 1, 0, ...forks);
        continue;
      }
      if (seq.opts.choices) {
        // its choices take its place, holding its blocks, and it ends
        this.scheduler.branch(seq);
        seq.finish("stop");
        this.releaseIfDone(seq);
        continue;
      }
      if (!seq.finished) {
        if (seq.opts.captureLogits) seq.firstLogits = await this.model.readLogits(b);
        this.scheduler.promote(seq);
        this.accept(seq, hist, b);
      }
      for (const f of forks) {
        this.scheduler.running.push(f);
        this.accept(f, hist, b);
      }
    }
  }

  /**
   * Reads the tokens of one decode round (`lookahead` steps of every running sequence),
   * submitting it first unless it is already in flight. While the GPU runs it, the next
   * round goes in when nothing can change in between (see `chainable`), so the GPU
   * never idles through the readback and the host's encoding of the next round.
   */
  private async decodeRound() {
    const sched = this.scheduler;
    let round = this.inflight;
    this.inflight = null;
    if (!round) round = await this.freshRound();
    if (!round) return;
    const k = this.chainable(round);
    if (k) {
      this.inflight = this.runner.submitRound(round.batch, k, round.k);
      this.stats.chainedSteps += k;
    }
    // sequences due to compress after this round: their pass ranks behind the round on
    // the GPU, and the next round goes in behind the ranking, so the GPU never waits
    // for this round's tokens, the host's setup of the pass, or the encoding of the next
    const due = !k && this.followable(round) ? sched.dueToCompress(round.batch) : [];
    // this round's tokens, taken once: before a pass ranked behind the round evicts
    // anything (a sequence that ended inside the round is released, not compressed), or here
    const r = round;
    let taken: Promise<void> | null = null;
    const take = () => (taken ??= (async () => {
      const tw = performance.now();
      const hist = await r.hist;
      this.stats.waitMs += performance.now() - tw;
      r.batch.forEach((s, b) => {
        for (const row of r.rows[b]) if (!s.finished) this.accept(s, hist, row);
      });
      for (const s of r.batch) this.releaseIfDone(s);
    })());
    if (due.length) {
      this.stats.compressAhead++;
      await this.compressor.compress(due, this.queueBehind(round.batch, round.k), take);
    }
    await take();
    // a round in flight holds no sequence due to compress (chainable sees to it); the
    // compression may queue the next round itself, behind its ranking
    if (!this.inflight && !due.length) await this.compressor.compress(sched.dueToCompress(round.batch), this.queueBehind(sched.running.filter((s) => !s.finished && s.cache), 0));
  }

  /** For the compressor: puts the next round of `batch` in behind its ranking, when it can go now. */
  private queueBehind(batch: Sequence[], ahead: number): () => boolean {
    return () => (this.inflight = this.roundBehind(batch, ahead)) !== null;
  }

  /** A round whose first step takes its tokens from the host, after making room in the pool. */
  private async freshRound(): Promise<Round | null> {
    const sched = this.scheduler;
    const live = sched.running.filter((s) => !s.finished);
    if (!live.length) return null;
    const k = Math.max(1, sched.roundSteps(live, 0));
    for (const s of live) {
      if (s.finished || !s.cache || this.cache.reserve(s.cache, k)) continue;
      // pool short: compress whoever can shrink before giving anything up, then preempt
      await this.compressor.compress(sched.compressible());
      if (!sched.preemptFor(s, k)) {
        // alone and still too big: the pool cannot hold this sequence at all
        s.finish("length");
        this.releaseIfDone(s);
      }
    }
    const batch = sched.running.filter((s) => !s.finished);
    if (!batch.length) return null;
    await this.fetchMasks(batch);
    return this.runner.submitRound(batch.filter((s) => !s.finished), k, 0);
  }

  /** The next-token masks of the constrained sequences among `seqs` (Sequence.mask), before a step samples for them. */
  private async fetchMasks(seqs: Sequence[]) {
    await Promise.all(seqs.map(async (s) => {
      if (s.opts.constraint) s.mask = await s.opts.constraint.nextMask();
    }));
  }

  /**
   * A round of `batch` submitted now, behind whatever the GPU is doing and `ahead` steps
   * of it still in flight, if it needs no prefill first, no grammar mask and the pool has
   * room without compressing or preempting; else null.
   */
  private roundBehind(batch: Sequence[], ahead: number): Round | null {
    // a constrained sequence's next mask is fetched (asynchronously) by freshRound only
    if (this.scheduler.prefillReady() || !batch.length || batch.some((s) => s.opts.constraint)) return null;
    const k = this.scheduler.roundSteps(batch, ahead);
    return k >= 1 && this.scheduler.reserveAll(batch, k) ? this.runner.submitRound(batch, k, ahead) : null;
  }

  /**
   * Steps of the round that may follow `round` before its tokens are known, or 0: only
   * while no waiting prompt could start its prefill, the GPU's last sampled tokens are
   * still this round's, every sequence goes on past it (short of EOS, whose overshoot
   * `releaseIfDone` rolls back) and the pool has room without compressing or preempting.
   */
  private chainable(round: Round): number {
    if (!this.followable(round)) return 0;
    const k = this.scheduler.roundSteps(round.batch, round.k);
    return k >= 1 && this.scheduler.reserveAll(round.batch, k) ? k : 0;
  }

  /** Whether a round may follow `round` before its tokens are known (see `chainable`). */
  private followable(round: Round): boolean {
    return !this.scheduler.prefillReady() && this.runner.steps === round.lastStep && round.batch.every((s) => !s.finished && s.cache);
  }

  /**
   * Takes the generated token of row `row` of a readback; finishes the sequence on EOS,
   * a completed or refused grammar, max tokens or full context.
   */
  private accept(seq: Sequence, sampled: Sampled, row: number) {
    if (seq.finished) return;
    const id = sampled.tokens[row];
    seq.output.push(id);
    const c = seq.opts.constraint;
    const allowed = c ? c.accept(id) : true;
    const lp = seq.opts.logprobs != null && sampled.logprobs ? readTokenLogprobs(sampled.logprobs, row, seq.opts.logprobs) : undefined;
    seq.opts.onToken?.(id, lp);
    if (!allowed || c?.terminated) seq.finish("stop");
    else if (!seq.opts.ignoreEos && this.cfg.eosIds.includes(id)) seq.finish("stop");
    else if (seq.output.length >= seq.opts.maxTokens) seq.finish("length");
    else if (seq.prompt.length + seq.output.length >= this.cfg.maxContext) seq.finish("length");
    this.releaseIfDone(seq);
  }

  private releaseIfDone(seq: Sequence) {
    if (!seq.finished) return;
    const i = this.scheduler.running.indexOf(seq);
    if (i >= 0) this.scheduler.running.splice(i, 1);
    if (seq.cache) {
      // lookahead steps past the end wrote K/V nobody will read: drop them first
      this.cache.rollback(seq.cache, Math.max(0, seq.numWrittenTokens - seq.numContextTokens));
      seq.kv = this.kvStats(seq);
      if (seq.opts.mapAtRelease) seq.finalMap = this.cacheMap(seq, seq.opts.mapAtRelease);
      this.cache.release(seq.cache);
      seq.cache = null;
    }
  }

  /** A read-only map of a sequence's cache now (src/cache/cache-map.ts; also during a step); null while it holds none. */
  cacheMap(seq: Sequence, bins: number): HeadsMap | null {
    if (!seq.cache) return null;
    return this.mapper.map(seq.cache, Math.min(seq.numWrittenTokens, seq.numContextTokens), bins, seq.evictedTokens > 0);
  }

  /** Current cache figures of a sequence (what it holds against what it would hold uncompressed). */
  kvStats(seq: Sequence): KvStats {
    return kvStatsOf(this.cache, seq);
  }

  destroy() {
    this.mapper.destroy();
    this.sharing.destroy();
    this.compressor.destroy();
    this.model.destroy();
    this.cache.destroy();
    destroyWeights(this.weights);
    this.gpu.device.destroy();
  }
}
