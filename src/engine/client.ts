// EngineClient: what serving sees of the engine (submit, abort, stats, limits),
// and the one background task that drives `engine.step()`. It steps while any
// sequence waits or runs and sleeps on a promise when idle; `submit` wakes it.
// Sequences submitted between steps join the next step (continuous batching).
// Aborts go to the engine, which applies them at the step's end. A failed step
// fails only the sequences it concerns and serving goes on.
import { BACKEND_NAMES } from "../gpu/device.ts";
import type { HeadsMap } from "../cache/cache-map.ts";
import type { KvStats } from "../cache/compression.ts";
import type { TextTokenizer } from "../model/tokenizer.ts";
import type { Engine } from "./engine.ts";
import type { FinishReason, Sequence } from "./sequence.ts";
import { matmulKind, warmUpPhases } from "./warm-up.ts";

type OnFail = (err: Error) => void;

/** What a request must stay within: the model's context and vocabulary, and the KV cache's geometry. */
export interface EngineLimits {
  maxContext: number;
  vocab: number;
  layers: number;
  kvHeads: number;
  /** layers x KV heads: the block lists of one sequence */
  heads: number;
  blockSize: number;
  numBlocks: number;
  /** sequences (table slots) the engine runs at once: the most choices (n) one request may ask */
  maxSeqs: number;
}

/** What the engine runs on. */
export interface EngineDevice {
  runtime: "bun" | "deno";
  /** the WebGPU implementation, as /version names it */
  webgpu: string;
  adapterName: string;
}

/** The engine's load now (the /metrics gauges). */
export interface EngineLoad {
  waiting: number;
  running: number;
  blocksUsed: number;
  blocksTotal: number;
  /** blocks nobody holds that keep cached prompt K/V (free to take, reclaimed when needed) */
  blocksCached: number;
}

export class EngineClient {
  /** failure callback of every sequence submitted and not yet seen finished */
  private live = new Map<Sequence, OnFail>();
  private stopped = false;
  private wake: (() => void) | null = null;
  private done: Promise<void> | null = null;

  constructor(
    private engine: Engine,
    private log: (msg: string) => void = () => {},
  ) {}

  get limits(): EngineLimits {
    return this.engine.limits;
  }
  get tokenizer(): TextTokenizer {
    return this.engine.tokenizer;
  }
  /** the tokens that end a sequence (a grammar's stop tokens) */
  get eosIds(): number[] {
    return this.engine.cfg.eosIds;
  }
  /** The runtime, WebGPU implementation and adapter it runs on (the /version route). */
  get device(): EngineDevice {
    const gpu = this.engine.gpu;
    return { runtime: gpu.runtime, webgpu: BACKEND_NAMES[gpu.backend], adapterName: gpu.adapterName };
  }

  stats(): EngineLoad {
    const pool = this.engine.cache.pool;
    return { waiting: this.engine.waiting.length, running: this.engine.running.length, blocksUsed: pool.numUsedBlocks, blocksTotal: pool.numBlocks, blocksCached: pool.numIdleCachedBlocks };
  }

  /** A read-only map of a sequence's cache while it holds one (Engine.cacheMap). */
  cacheMap(seq: Sequence, bins: number): HeadsMap | null {
    return this.engine.cacheMap(seq, bins);
  }

  /** A sequence's cache figures now (frozen once it ends). */
  kvStats(seq: Sequence): KvStats {
    return this.engine.kvStats(seq);
  }

  /**
   * Runs the warm-up's synthetic requests (warm-up.ts) through the stepping loop, phase
   * by phase, so that every pipeline a request can need is compiled; requests submitted
   * meanwhile run beside them. `onPhase` hears each phase as it starts. Returns the
   * pipelines built. Stops early (between phases) once the client stops.
   */
  async warmUp(onPhase: (i: number, n: number, name: string) => void = () => {}): Promise<number> {
    const e = this.engine;
    const maxWorkgroupBytes = e.gpu.limits.maxComputeWorkgroupStorageSize;
    const phases = warmUpPhases({
      maxContext: e.cfg.maxContext,
      vocab: e.cfg.vocab,
      maxSeqs: e.opts.maxSeqs,
      lookahead: e.opts.lookahead,
      prefillChunk: e.opts.prefillChunk,
      maxWorkgroupBytes,
      matmulKind: (M) => matmulKind(e.model, M, maxWorkgroupBytes, e.gpu.features.subgroups),
    });
    const before = e.kc.pipelineCount;
    for (const [i, p] of phases.entries()) {
      if (this.stopped) break;
      onPhase(i, phases.length, p.name);
      const failed: Error[] = [];
      for (const s of p.seqs) this.submit(s, (err) => failed.push(err));
      await Promise.all(p.seqs.map((s) => s.wait()));
      if (failed.length) throw new Error(`warm-up ${p.name}: ${failed[0].message}`);
    }
    return e.kc.pipelineCount - before;
  }

  start() {
    this.done ??= this.run();
  }

  /** Throws the engine's PromptError for a prompt it would refuse. */
  checkPrompt(prompt: number[]) {
    this.engine.checkPrompt(prompt);
  }

  /** Queues a sequence; throws the engine's PromptError when it refuses the prompt. */
  submit(seq: Sequence, onFail: OnFail) {
    if (this.stopped) throw new Error("the server is shutting down");
    this.engine.add(seq);
    this.live.set(seq, onFail);
    this.wake?.();
  }

  /**
   * Queues the n choices of one prompt, which share its prefill (Engine.addChoices);
   * `onFail[i]` hears of choice i's failure. Throws the engine's PromptError.
   */
  submitChoices(choices: Sequence[], onFail: OnFail[]) {
    if (this.stopped) throw new Error("the server is shutting down");
    const queued = this.engine.addChoices(choices);
    choices.forEach((c, i) => this.live.set(c, onFail[i]));
    // a parent failing (its prefill step) fails every choice
    if (!choices.includes(queued)) this.live.set(queued, (e) => onFail.forEach((f) => f(e)));
    this.wake?.();
  }

  /** Ends a sequence and frees its blocks, at the end of the step in flight if there is one. */
  abort(seq: Sequence, reason: FinishReason) {
    if (!seq.finished) this.engine.abort(seq, reason);
  }

  /** Stops stepping once the current step ends; sequences left are the caller's to abort first. */
  async stop() {
    this.stopped = true;
    this.wake?.();
    await this.done;
  }

  /** Frees the GPU; after stop(). */
  destroy() {
    this.engine.destroy();
  }

  private async run() {
    while (!this.stopped) {
      this.forgetFinished();
      if (this.engine.idle) {
        await new Promise<void>((r) => (this.wake = r));
        this.wake = null;
        continue;
      }
      const inStep = [...this.engine.waiting, ...this.engine.running].filter((s) => !s.finished);
      try {
        await this.engine.step();
      } catch (e) {
        this.failStep(inStep, e as Error);
        await new Promise((r) => setTimeout(r, 0)); // never spin hot on a repeating failure
      }
    }
  }

  /**
   * A step threw. The sequences it finished on the way out are the ones it was
   * about (e.g. a prompt the cache can never hold); when it finished none, the
   * failure concerns the whole batch, so every sequence of the step fails.
   */
  private failStep(inStep: Sequence[], err: Error) {
    const finished = inStep.filter((s) => s.finished);
    const affected = finished.length ? finished : inStep;
    this.log(`step failed (${affected.length} request(s) ended): ${err.message}`);
    for (const s of affected) {
      this.engine.abort(s, "abort");
      this.live.get(s)?.(err);
      this.live.delete(s);
    }
  }

  private forgetFinished() {
    for (const s of this.live.keys()) if (s.finished) this.live.delete(s);
  }
}
