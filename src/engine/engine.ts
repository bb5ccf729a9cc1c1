// Engine: owns the GPU, model, cache and tokenizer, and runs sequences to
// completion. Each `step()` either prefills a chunk of waiting prompts or runs a
// decode round for every running sequence: `lookahead` decode steps are submitted
// back to back, each feeding on the previous step's GPU-sampled tokens, and their
// tokens are read back in one map (Deno's mapAsync costs ~10 ms; this hides it).
// While one round runs the next is already queued behind it, so the GPU does not
// wait for the readback or for the host to record the next round.
import { createGpu, describeGpu, type Gpu } from "../gpu/device.ts";
import { KernelContext } from "../gpu/kernels.ts";
import { BlockPool } from "../cache/block-pool.ts";
import { KvCache, type SeqCache } from "../cache/kv-cache.ts";
import type { ModelConfig } from "../model/config.ts";
import { openModel } from "../model/model-files.ts";
import { quantizeWeights, type OnLoadQuant } from "../model/quantize-weights.ts";
import { loadWeights, destroyWeights, type ModelWeights } from "../model/weights.ts";
import { LlamaModel, type StepSeq } from "../model/llama.ts";
import { TextTokenizer } from "../model/tokenizer.ts";
import type { CompressionOptions, KvStats } from "../cache/compression.ts";
import { Compactor } from "../cache/compaction.ts";
import { GpuPlanner } from "../cache/gpu-planner.ts";
import { keepBudget, type CompressionPolicy, type PlanContext } from "../cache/policies.ts";
import { policyFor } from "../cache/methods.ts";
import { Sequence, type FinishReason } from "./sequence.ts";

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
  log?: (msg: string) => void;
}

export class Engine {
  readonly waiting: Sequence[] = [];
  readonly running: Sequence[] = [];
  private stepping: Promise<void> | null = null;
  /** a decode round submitted ahead, whose tokens the next decode round reads */
  private inflight: Round | null = null;
  private compactor: Compactor;
  private planner: GpuPlanner;
  /**
   * For benchmarks: time spent compressing (gather or GPU ranking + readback, host
   * planning, compaction), and in decode rounds recording steps and waiting for tokens;
   * chainedSteps: decode steps submitted while the previous round was still in flight;
   * compressOverlapped: compression passes that had the next round decode behind their ranking;
   * compressAhead: passes ranked behind the round still in flight (before its tokens were read).
   */
  readonly stats = { compressMs: 0, gatherMs: 0, planMs: 0, applyMs: 0, compressions: 0, evictedTokens: 0, preemptions: 0, decodeSteps: 0, chainedSteps: 0, compressOverlapped: 0, compressAhead: 0, encodeMs: 0, waitMs: 0 };

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
    this.compactor = new Compactor(kc, cache);
    this.planner = new GpuPlanner(kc, cache, this.gpu.limits.maxComputeWorkgroupStorageSize);
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
      });
    } catch (e) {
      gpu.device.destroy(); // frees whatever was uploaded before the failure
      throw e;
    }
  }

  /** Queues a sequence; it runs on the next steps. */
  add(seq: Sequence) {
    if (seq.prompt.length >= this.cfg.maxContext) {
      throw new Error(`prompt has ${seq.prompt.length} tokens; the model's context is ${this.cfg.maxContext}`);
    }
    for (const t of seq.prompt) {
      if (!Number.isInteger(t) || t < 0 || t >= this.cfg.vocab) throw new Error(`token id ${t} is outside the vocabulary (0..${this.cfg.vocab - 1})`);
    }
    this.waiting.push(seq);
  }

  /**
   * Ends a sequence now (a client went away: "abort"; a stop string matched: "stop")
   * and frees its blocks at once. Safe to call at any time, also mid-step.
   */
  cancel(seq: Sequence, reason: FinishReason = "abort") {
    const i = this.waiting.indexOf(seq);
    if (i >= 0) this.waiting.splice(i, 1);
    seq.finish(reason);
    this.releaseIfDone(seq);
  }

  get idle(): boolean {
    return this.waiting.length === 0 && this.running.length === 0;
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

  /**
   * Teacher-forced negative log-likelihood of tokens[1..] given what precedes each,
   * with compression applied as the text streams: chunks of `interval` tokens whose
   * queries all score the cache (continual mode), compressed after each chunk. Runs
   * on an idle engine, one sequence at a time.
   */
  async perplexity(tokens: number[], compression: Partial<CompressionOptions> = {}): Promise<{ nll: Float32Array; kv: KvStats }> {
    if (!this.idle) throw new Error("perplexity needs an idle engine");
    if (tokens.length < 2) throw new Error("perplexity needs at least two tokens");
    if (tokens.length > this.cfg.maxContext) throw new Error(`text has ${tokens.length} tokens; the model's context is ${this.cfg.maxContext}`);
    const seq = new Sequence(tokens, { maxTokens: 1, sampling: { temperature: 0, topP: 1, topK: 0, seed: 0 }, ignoreEos: true, compression });
    seq.cache = this.cache.open();
    if (!seq.cache) throw new Error("no free sequence slot");
    const chunk = seq.compressing ? seq.compression.interval : this.opts.prefillChunk;
    const nll = new Float32Array(tokens.length - 1);
    try {
      for (let p = 0; p < nll.length; p += chunk) {
        const n = Math.min(chunk, nll.length - p);
        if (!this.cache.reserve(seq.cache, n)) throw new Error(`KV cache too small for a ${tokens.length}-token text; raise --kv-memory`);
        this.model.step({
          seqs: [{ seq: seq.cache, tokens: tokens.slice(p, p + n), n, pos0: p, sampling: seq.opts.sampling, counter: 0, scoreRows: seq.compressing ? n : 0 }],
          tokensFromGpu: false,
          histOffset: 0,
          nllTargets: Uint32Array.from(tokens.slice(p + 1, p + n + 1)),
        });
        nll.set(await this.model.readNll(n), p);
        seq.numComputed += n;
        seq.fed += n;
        seq.stepsSinceCompress += n;
        const again = !seq.compression.compressOnce || seq.compressions === 0;
        if (seq.compressing && again && seq.stepsSinceCompress >= seq.compression.interval) await this.compress([seq]);
      }
      return { nll, kv: this.kvStats(seq) };
    } finally {
      this.cache.release(seq.cache!);
      seq.cache = null;
    }
  }

  async step(): Promise<void> {
    // steps never overlap: the model's workspace is shared
    while (this.stepping) await this.stepping;
    this.stepping = this.waiting.length ? this.prefillStep() : this.decodeRound();
    try {
      await this.stepping;
    } finally {
      this.stepping = null;
    }
  }

  /**
   * Admission by free blocks: a new sequence starts only when its whole prefill fits
   * beside a block per head for every running sequence (it compresses only once the
   * prefill ends), unless nothing else runs.
   */
  private admits(seq: Sequence): boolean {
    return this.cache.pool.numFreeBlocks >= this.cache.heads * (Math.ceil(seq.input.length / this.cache.blockSize) + this.running.length);
  }

  /** Whether a prefill step would start or go on with a waiting sequence now. */
  private prefillReady(): boolean {
    const seq = this.waiting.find((s) => !s.finished);
    if (!seq) return false;
    return seq.cache !== null || this.running.length === 0 || (this.cache.freeSeqSlots > 0 && this.admits(seq));
  }

  /** Prefills up to `prefillChunk` prompt tokens of the first waiting sequence(s). */
  private async prefillStep() {
    const batch: StepSeq[] = [];
    const seqs: Sequence[] = [];
    let budget = this.opts.prefillChunk;
    for (const seq of [...this.waiting]) {
      if (budget <= 0) break;
      if (seq.finished) {
        this.waiting.splice(this.waiting.indexOf(seq), 1);
        continue;
      }
      const alone = this.running.length === 0 && batch.length === 0;
      if (!seq.cache && !alone && !this.admits(seq)) break;
      if (!seq.cache) {
        seq.cache = this.cache.open();
        if (!seq.cache) break; // every table slot is taken
      }
      const { n, scoreRows } = this.prefillChunk(seq, budget);
      if (!this.cache.reserve(seq.cache, n)) {
        if (seq.numComputed === 0 && alone) {
          this.cache.release(seq.cache);
          seq.cache = null;
          this.waiting.splice(this.waiting.indexOf(seq), 1);
          seq.finish("length");
          throw new Error(`KV cache too small for a ${seq.input.length}-token prompt; raise --kv-memory`);
        }
        break;
      }
      batch.push({
        seq: seq.cache,
        tokens: seq.input.slice(seq.numComputed, seq.numComputed + n),
        n,
        pos0: seq.numComputed,
        sampling: seq.opts.sampling,
        counter: seq.output.length,
        scoreRows,
      });
      seqs.push(seq);
      budget -= n;
    }
    if (!batch.length) {
      if (this.running.length) return this.decodeRound();
      throw new Error("no sequence can be scheduled: the KV cache is full");
    }
    this.model.reserveHistory(batch.length);
    this.model.step({ seqs: batch, tokensFromGpu: false, histOffset: 0 });
    const hist = await this.model.readHistory(batch.length);
    for (let b = 0; b < seqs.length; b++) {
      seqs[b].numComputed += batch[b].n;
      seqs[b].fed += batch[b].n;
    }
    await this.compress(seqs.filter((s) => s.compressing && s.numComputed === s.compressAt));
    for (let b = 0; b < seqs.length; b++) {
      const seq = seqs[b];
      if (!seq.prefilled || seq.finished) continue;
      if (seq.opts.captureLogits) seq.firstLogits = await this.model.readLogits(b);
      this.waiting.splice(this.waiting.indexOf(seq), 1);
      this.running.push(seq);
      this.accept(seq, hist[b]);
    }
  }

  /**
   * The next prefill chunk of `seq` within `budget` tokens. A chunk never crosses the
   * point where compression runs, and the chunk that reaches it holds the whole
   * observation window, whose queries score the cached keys.
   */
  private prefillChunk(seq: Sequence, budget: number): { n: number; scoreRows: number } {
    const left = seq.input.length - seq.numComputed;
    const w = seq.compression.observationWindow;
    if (!seq.compressing) return { n: Math.min(budget, left), scoreRows: 0 };
    if (seq.numComputed >= seq.compressAt) {
      // past the first compression (query-agnostic question): continual mode keeps scoring
      const n = Math.min(budget, left);
      return { n, scoreRows: seq.continual ? n : 0 };
    }
    const rem = seq.compressAt - seq.numComputed;
    if (rem <= budget) return { n: rem, scoreRows: Math.min(w, rem) };
    return { n: Math.max(1, Math.min(budget, rem - w)), scoreRows: 0 };
  }

  /**
   * Scores -> plan -> compaction for each sequence, per its own options. The scores and
   * positions of all of them come back in one readback (Deno pays ~10 ms per map).
   * `overlap`: the next round of `overlap.batch` may go in behind the ranking, following
   * `overlap.ahead` steps still in flight (whose tokens only the GPU has yet).
   */
  private async compress(seqs: Sequence[], overlap: { batch: Sequence[]; ahead: number } | null = null) {
    const t0 = performance.now();
    const due: { seq: Sequence; cache: SeqCache; policy: CompressionPolicy; ctx: PlanContext; keep: number }[] = [];
    for (const seq of seqs) {
      seq.stepsSinceCompress = 0;
      const policy = policyFor(seq.compression);
      if (!policy || !seq.cache) continue;
      seq.compressions++;
      this.stats.compressions++;
      const ctx: PlanContext = {
        layers: this.cfg.layers,
        kvHeads: this.cfg.kvHeads,
        lastPos: seq.fed - 1,
        logicalLen: seq.fed,
        opts: seq.compression,
        seed: seq.id,
      };
      const keep = keepBudget(ctx);
      if (this.cache.tokensKept(seq.cache) > keep) due.push({ seq, cache: seq.cache, policy, ctx, keep });
    }
    // the GPU planner's scratch of one pass lives in one storage binding: passes that
    // would outgrow it run in several groups, and a sequence too large alone plans on the host
    const groups = GpuPlanner.groups(due.filter((d) => this.opts.gpuPlanner && GpuPlanner.handles(d.ctx.opts)), this.gpu.limits.maxStorageBufferBindingSize);
    const onGpu = new Set(groups.flat());
    const onHost = due.filter((d) => !onGpu.has(d));
    // one GPU pass and nothing planned on the host: the next round can go in behind it
    const behind = overlap !== null && groups.length === 1 && !onHost.length;
    let roundMs = 0;
    for (const group of groups) {
      const tr = performance.now();
      const reqs = group.map((d) => ({ cache: d.cache, ctx: d.ctx, keep: d.keep }));
      const ranking = this.planner.rank(reqs);
      if (behind) {
        // the next round decodes on the GPU behind the ranking while the host plans;
        // its keys land past the ranked ones, and the eviction keeps and moves them
        const tb = performance.now();
        this.inflight = this.roundBehind(overlap!.batch, overlap!.ahead);
        roundMs = performance.now() - tb;
        if (this.inflight) this.stats.compressOverlapped++;
      }
      const ranked = await ranking;
      const t1 = performance.now();
      const counts = GpuPlanner.counts(reqs, ranked);
      const t2 = performance.now();
      this.stats.gatherMs += t1 - tr - roundMs;
      this.stats.planMs += t2 - t1;
      const evicted = this.planner.evict(reqs, counts, group.map((d) => d.seq.cache === d.cache)); // cancelled while ranking: skipped
      group.forEach((d, i) => {
        d.seq.evictedTokens += evicted[i];
        this.stats.evictedTokens += evicted[i];
      });
      this.stats.applyMs += performance.now() - t2;
    }
    if (onHost.length) {
      const tg = performance.now();
      const keys = await this.compactor.gatherMany(onHost.map((d) => d.cache));
      this.stats.gatherMs += performance.now() - tg;
      onHost.forEach((d, i) => {
        if (d.seq.cache !== d.cache) return; // cancelled while the scores were read
        const t1 = performance.now();
        const plan = d.policy.plan(keys[i], d.ctx, d.keep);
        const t2 = performance.now();
        const evicted = this.compactor.apply(d.cache, plan);
        d.seq.evictedTokens += evicted;
        this.stats.evictedTokens += evicted;
        this.stats.planMs += t2 - t1;
        this.stats.applyMs += performance.now() - t2;
      });
    }
    this.stats.compressMs += performance.now() - t0 - roundMs;
  }

  /**
   * Reads the tokens of one decode round (`lookahead` steps of every running sequence),
   * submitting it first unless it is already in flight. While the GPU runs it, the next
   * round goes in when nothing can change in between (see `chainable`), so the GPU
   * never idles through the readback and the host's encoding of the next round.
   */
  private async decodeRound() {
    let round = this.inflight;
    this.inflight = null;
    if (!round) round = await this.freshRound();
    if (!round) return;
    const k = this.chainable(round);
    if (k) {
      this.inflight = this.submitRound(round.batch, k, round.k);
      this.stats.chainedSteps += k;
    }
    // sequences due to compress after this round: their pass ranks behind the round on
    // the GPU, and the next round goes in behind the ranking, so the GPU never waits
    // for this round's tokens, the host's setup of the pass, or the encoding of the next
    const due = !k && this.followable(round) ? this.dueToCompress(round.batch) : [];
    if (due.length) {
      this.stats.compressAhead++;
      await this.compress(due, { batch: round.batch, ahead: round.k });
    }
    const tw = performance.now();
    const hist = await round.hist;
    this.stats.waitMs += performance.now() - tw;
    const B = round.batch.length;
    for (let b = 0; b < B; b++) {
      const s = round.batch[b];
      for (let j = 0; j < round.k && !s.finished; j++) this.accept(s, hist[j * B + b]);
    }
    for (const s of round.batch) this.releaseIfDone(s);
    // a round in flight holds no sequence due to compress (chainable sees to it); the
    // compression may queue the next round itself, behind its ranking
    if (!this.inflight && !due.length) await this.compress(this.dueToCompress(round.batch), { batch: this.running.filter((s) => !s.finished && s.cache), ahead: 0 });
  }

  private dueToCompress(batch: Sequence[]): Sequence[] {
    return batch.filter((s) => !s.finished && s.continual && s.stepsSinceCompress >= s.compression.interval);
  }

  /** A round whose first step takes its tokens from the host, after making room in the pool. */
  private async freshRound(): Promise<Round | null> {
    const live = this.running.filter((s) => !s.finished);
    if (!live.length) return null;
    const k = Math.max(1, this.roundSteps(live, 0));
    for (const s of live) {
      if (s.finished || !s.cache || this.cache.reserve(s.cache, k)) continue;
      // pool short: compress whoever can shrink before giving anything up
      await this.compress(this.running.filter((o) => o.compressing && !o.finished && o.stepsSinceCompress > 0));
      // then preempt by recompute, newest first (a half-prefilled waiting sequence before any running one)
      while (s.cache && !this.cache.reserve(s.cache, k)) {
        const victim = lastOf(this.waiting, (w) => w.cache !== null) ?? lastOf(this.running, (r) => !r.finished && r !== s) ?? s;
        if (victim === s && this.running.length === 1) {
          // alone and still too big: the pool cannot hold this sequence at all
          s.finish("length");
          this.releaseIfDone(s);
          break;
        }
        this.preempt(victim);
      }
    }
    const batch = this.running.filter((s) => !s.finished);
    return batch.length ? this.submitRound(batch, k, 0) : null;
  }

  /**
   * A round of `batch` submitted now, behind whatever the GPU is doing and `ahead` steps
   * of it still in flight, if it needs no prefill first and the pool has room without
   * compressing or preempting; else null.
   */
  private roundBehind(batch: Sequence[], ahead: number): Round | null {
    if (this.prefillReady() || !batch.length) return null;
    const k = this.roundSteps(batch, ahead);
    return k >= 1 && this.reserveAll(batch, k) ? this.submitRound(batch, k, ahead) : null;
  }

  /**
   * Steps a round of `batch` may take once `ahead` more are done (at most `lookahead`,
   * 0 or less when one of them is done): up to each sequence's token and context
   * limits, and never past its next compression (continual mode).
   */
  private roundSteps(batch: Sequence[], ahead: number): number {
    let k = this.opts.lookahead;
    for (const s of batch) {
      const out = s.output.length + ahead;
      k = Math.min(k, s.opts.maxTokens - out, this.cfg.maxContext - (s.prompt.length + out));
      if (s.continual) k = Math.min(k, s.compression.interval - s.stepsSinceCompress);
    }
    return k;
  }

  /** Room for k more tokens in every sequence of `batch` (reservations made stay). */
  private reserveAll(batch: Sequence[], k: number): boolean {
    return batch.every((s) => this.cache.reserve(s.cache!, k));
  }

  /**
   * Steps of the round that may follow `round` before its tokens are known, or 0: only
   * while no waiting prompt could start its prefill, the GPU's last sampled tokens are
   * still this round's, every sequence goes on past it (short of EOS, whose overshoot
   * `releaseIfDone` rolls back) and the pool has room without compressing or preempting.
   */
  private chainable(round: Round): number {
    if (!this.followable(round)) return 0;
    const k = this.roundSteps(round.batch, round.k);
    return k >= 1 && this.reserveAll(round.batch, k) ? k : 0;
  }

  /**
   * Submits k decode steps of `batch`, each feeding on the previous step's GPU-sampled
   * tokens (the first too when `ahead` > 0: it follows a round of `ahead` steps still
   * in flight), and starts their readback.
   */
  private submitRound(batch: Sequence[], k: number, ahead: number): Round {
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
        })),
        tokensFromGpu: ahead > 0 || j > 0,
        histOffset: j * B,
      });
    }
    for (const s of batch) {
      s.fed += k;
      s.stepsSinceCompress += k;
    }
    // the copy is queued now, before any later step can overwrite the history
    const hist = this.model.readHistory(k * B);
    hist.catch(() => {}); // a round nobody reads any more (its sequences all ended) must not raise
    this.stats.encodeMs += performance.now() - te;
    this.stats.decodeSteps += k;
    return { batch, k, hist, lastStep: this.model.steps };
  }

  /** Whether a round may follow `round` before its tokens are known (see `chainable`). */
  private followable(round: Round): boolean {
    return !this.prefillReady() && this.model.steps === round.lastStep && round.batch.every((s) => !s.finished && s.cache);
  }

  /** Gives a sequence's blocks back; it waits at the front of the queue to be recomputed. */
  private preempt(seq: Sequence) {
    const r = this.running.indexOf(seq);
    if (r >= 0) this.running.splice(r, 1);
    const w = this.waiting.indexOf(seq);
    if (w >= 0) this.waiting.splice(w, 1);
    if (seq.cache) this.cache.release(seq.cache);
    seq.cache = null;
    seq.resetForRecompute();
    this.waiting.unshift(seq);
    this.stats.preemptions++;
  }

  /** Takes one generated token; finishes the sequence on EOS, max tokens or full context. */
  private accept(seq: Sequence, id: number) {
    if (seq.finished) return;
    seq.output.push(id);
    seq.opts.onToken?.(id);
    if (!seq.opts.ignoreEos && this.cfg.eosIds.includes(id)) seq.finish("stop");
    else if (seq.output.length >= seq.opts.maxTokens) seq.finish("length");
    else if (seq.prompt.length + seq.output.length >= this.cfg.maxContext) seq.finish("length");
    this.releaseIfDone(seq);
  }

  private releaseIfDone(seq: Sequence) {
    if (!seq.finished) return;
    const i = this.running.indexOf(seq);
    if (i >= 0) this.running.splice(i, 1);
    if (seq.cache) {
      // lookahead steps past the end wrote K/V nobody will read: drop them first
      this.cache.rollback(seq.cache, Math.max(0, seq.fed - seq.tokensNeeded));
      seq.kv = this.kvStats(seq);
      this.cache.release(seq.cache);
      seq.cache = null;
    }
  }

  /** Current cache figures of a sequence (what it holds against what it would hold uncompressed). */
  kvStats(seq: Sequence): KvStats {
    if (!seq.cache) return seq.kv;
    const c = this.cache;
    const logical = Math.min(seq.fed, seq.tokensNeeded);
    const blocksUsed = c.blocksUsed(seq.cache);
    const blocksUncompressed = c.heads * Math.ceil(logical / c.blockSize);
    return {
      blocksUsed,
      blocksUncompressed,
      tokensKept: c.tokensKept(seq.cache),
      tokensLogical: logical,
      compressionRate: blocksUsed ? blocksUncompressed / blocksUsed : 1,
      evictedTokens: seq.evictedTokens,
    };
  }

  destroy() {
    this.compactor.destroy();
    this.planner.destroy();
    this.model.destroy();
    this.cache.destroy();
    destroyWeights(this.weights);
    this.gpu.device.destroy();
  }
}

/** Decode steps on the GPU whose sampled tokens are not read yet. */
interface Round {
  batch: Sequence[];
  k: number;
  hist: Promise<Uint32Array>;
  /** the model's step count after the round's last step */
  lastStep: number;
}

function lastOf<T>(xs: T[], ok: (x: T) => boolean): T | undefined {
  for (let i = xs.length - 1; i >= 0; i--) if (ok(xs[i])) return xs[i];
  return undefined;
}
