// Generation: one request's run through the engine, as text deltas. Token ids
// come from the engine step by step (onToken); the incremental decoder keeps
// UTF-8 whole and the stop matcher holds back text that may become a stop string.
// Iterate it for the deltas, then `finish()` gives the finish reason and usage.
import type { EngineClient } from "../engine/client.ts";
import { Sequence } from "../engine/sequence.ts";
import type { Sampling } from "../model/llama.ts";
import { IncrementalDecoder } from "../model/tokenizer.ts";
import type { CompressionOptions, KvStats } from "../cache/compression.ts";
import type { ServerMetrics } from "./server-metrics.ts";
import { StopMatcher } from "./stop-matcher.ts";
import { ServingError } from "./errors.ts";

/** What a route asks for, in engine terms. */
export interface GenerationParams {
  prompt: number[];
  maxTokens: number;
  sampling: Sampling;
  stop: string[];
  ignoreEos: boolean;
  compression: Partial<CompressionOptions>;
  /** logits independent of the requests beside it (Sequence's batchInvariant): a seeded answer's */
  batchInvariant: boolean;
  /** where the prompt's reusable prefix ends (chat: the final user turn; kv_compression.cache_prefix) */
  prefixEnd?: number;
}

export interface GenerationResult {
  /** "abort" only when the client went away */
  finishReason: "stop" | "length" | "abort";
  promptTokens: number;
  /** tokens generated up to the end (the EOS or stop-matching token included) */
  completionTokens: number;
  /** prompt tokens whose K/V came from the prefix cache (usage.prompt_tokens_details.cached_tokens) */
  cachedTokens: number;
  kv: KvStats;
}

export interface GenerationDeps {
  client: EngineClient;
  metrics: ServerMetrics;
}

export class Generation implements AsyncIterable<string> {
  readonly seq: Sequence;
  private decoder: IncrementalDecoder;
  private matcher: StopMatcher;
  private deltas: string[] = [];
  private wakeReader: (() => void) | null = null;
  /** no more deltas will come: finished, stopped, aborted or failed */
  private closed = false;
  private stopHit = false;
  private aborted = false;
  private error: ServingError | null = null;
  private tokens = 0;
  private readonly t0 = performance.now();
  private tLast = 0;
  /** performance.now() at the first token and at the end, for the request log */
  firstTokenAt: number | null = null;
  endedAt: number | null = null;
  /** resolves once the sequence has ended and its blocks are back in the pool */
  readonly ended: Promise<void>;

  /**
   * The n choices of one request (n > 1), sharing its prompt's prefill; choice i samples
   * with seed + i. Throws the engine's PromptError when it refuses the prompt.
   */
  static choices(deps: GenerationDeps, params: GenerationParams, n: number, signal?: AbortSignal): Generation[] {
    const gens = Array.from({ length: n }, (_, i) => new Generation(deps, { ...params, sampling: { ...params.sampling, seed: (params.sampling.seed + i) >>> 0 } }, signal, i, false));
    deps.client.submitChoices(gens.map((g) => g.seq), gens.map((g) => g.onEngineFail));
    return gens;
  }

  /**
   * Queues the request on the engine (unless it is choice `index` of several, which
   * `choices` queues together); throws the engine's PromptError when it refuses the prompt.
   */
  constructor(private deps: GenerationDeps, params: GenerationParams, signal?: AbortSignal, readonly index = 0, queue = true) {
    this.decoder = new IncrementalDecoder(deps.client.tokenizer);
    this.matcher = new StopMatcher(params.stop);
    this.seq = new Sequence(params.prompt, {
      maxTokens: params.maxTokens,
      sampling: params.sampling,
      ignoreEos: params.ignoreEos,
      compression: params.compression,
      batchInvariant: params.batchInvariant,
      prefixEnd: params.prefixEnd,
      onToken: (id) => this.onToken(id),
    });
    if (queue) deps.client.submit(this.seq, this.onEngineFail);
    this.ended = this.seq.wait().then(() => this.onFinished());
    if (signal) {
      if (signal.aborted) this.abort();
      else signal.addEventListener("abort", () => this.abort(), { once: true });
    }
  }

  private onEngineFail = (e: Error) => this.fail(new ServingError({ kind: "engine_failed", message: e.message }));

  /** The client went away: cancel the sequence (its blocks are freed within one step). */
  abort() {
    if (this.closed) return;
    this.aborted = true;
    this.close();
    this.deps.client.abort(this.seq, "abort");
  }

  /** Ends the request with an error the client gets (engine failure, shutdown). */
  fail(err: ServingError) {
    if (this.closed) return;
    this.error = err;
    this.close();
    this.deps.client.abort(this.seq, "abort");
  }

  async *[Symbol.asyncIterator](): AsyncIterator<string> {
    for (;;) {
      if (this.deltas.length) yield this.deltas.shift()!;
      else if (this.closed) break;
      else await new Promise<void>((r) => (this.wakeReader = r));
    }
    if (this.error) throw this.error;
  }

  /** All text at once (non-streaming requests). */
  async text(): Promise<string> {
    let s = "";
    for await (const d of this) s += d;
    return s;
  }

  /** Waits for the end; throws the ServingError of a failed request. */
  async finish(): Promise<GenerationResult> {
    await this.ended;
    if (this.error) throw this.error;
    const finishReason = this.aborted ? "abort" : this.stopHit ? "stop" : this.seq.finishReason === "length" ? "length" : "stop";
    return { finishReason, promptTokens: this.seq.prompt.length, completionTokens: this.tokens, cachedTokens: this.seq.cachedTokens, kv: this.seq.kv };
  }

  private onToken(id: number) {
    if (this.closed) return; // lookahead tokens after a stop match or an abort
    const now = performance.now();
    const m = this.deps.metrics;
    if (this.tokens === 0) {
      this.firstTokenAt = now;
      m.ttft.observe((now - this.t0) / 1000);
    } else m.itl.observe((now - this.tLast) / 1000);
    this.tLast = now;
    this.tokens++;
    const r = this.matcher.push(this.decoder.push(id));
    this.emit(r.text);
    if (r.stopped) {
      this.stopHit = true;
      this.close();
      this.deps.client.abort(this.seq, "stop");
    }
  }

  /** The sequence ended (its blocks are back in the pool): flush held text, record metrics. */
  private onFinished() {
    this.endedAt = performance.now();
    if (!this.closed) {
      const r = this.matcher.push(this.decoder.flush());
      this.emit(r.text);
      this.stopHit ||= r.stopped;
      if (!r.stopped) this.emit(this.matcher.flush());
      this.close();
    }
    const m = this.deps.metrics;
    // a request's prompt counts once, however many choices share it
    if (this.index === 0) {
      m.promptTokens.inc(this.seq.numComputedTokens);
      if (this.seq.prefixQueried) {
        m.prefixQueries.inc(this.seq.prompt.length);
        m.prefixHits.inc(this.seq.cachedTokens);
      }
    }
    m.generationTokens.inc(this.tokens);
    m.preemptions.inc(this.seq.preemptions);
    m.e2e.observe((this.endedAt - this.t0) / 1000);
    if (this.seq.numComputedTokens > 0) {
      m.evictedTokens.inc(this.seq.kv.evictedTokens);
      m.compressionRate.observe(this.seq.kv.compressionRate);
    }
  }

  private emit(text: string) {
    if (!text) return;
    this.deltas.push(text);
    this.wake();
  }

  private close() {
    this.closed = true;
    this.wake();
  }

  private wake() {
    const w = this.wakeReader;
    this.wakeReader = null;
    w?.();
  }
}
