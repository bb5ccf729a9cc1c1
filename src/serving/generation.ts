// Generation: one request's run through the engine, as text deltas. Token ids
// come from the engine step by step (onToken); the incremental decoder keeps
// UTF-8 whole and the stop matcher holds back text that may become a stop string.
// Iterate it for the deltas (text, and the logprobs of the tokens behind it when
// asked), then `finish()` gives the finish reason and usage.
import type { EngineClient } from "../engine/client.ts";
import { Sequence, type TokenConstraint } from "../engine/sequence.ts";
import type { TokenLogprobs } from "../model/token-logprobs.ts";
export { TOP_LOGPROBS_MAX } from "../model/token-logprobs.ts";
import type { Sampling } from "../model/llama.ts";
import { IncrementalDecoder } from "../model/tokenizer.ts";
import type { CompressionOptions, KvStats } from "../cache/compression.ts";
import type { ServerMetrics } from "./server-metrics.ts";
import { StopMatcher } from "./stop-matcher.ts";
import { ServingError } from "./errors.ts";
import { CACHE_MAP_BINS } from "./cache-maps.ts";

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
  /** each token's logprob and this many alternatives (0-20); absent: none */
  logprobs?: number;
  /** constrained decoding (src/serving/grammar.ts); disposed when the request ends */
  constraint?: TokenConstraint & { dispose?(): void };
}

/** A token as the client sees it: its text (U+FFFD where it splits a character), UTF-8 bytes and logprob. */
export interface TokenLogprob {
  token: string;
  bytes: number[];
  logprob: number;
  top: { token: string; bytes: number[]; logprob: number }[];
}

/** Text that became stable, and the logprobs of the tokens that came since the last delta (when asked). */
export interface GenerationDelta {
  text: string;
  logprobs: TokenLogprob[];
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

export class Generation implements AsyncIterable<GenerationDelta> {
  readonly seq: Sequence;
  private decoder: IncrementalDecoder;
  private matcher: StopMatcher;
  private deltas: GenerationDelta[] = [];
  /** logprobs of tokens not yet given to a delta */
  private pendingLogprobs: TokenLogprob[] = [];
  /** every generated token's logprobs, in order (when asked) */
  readonly logprobs: TokenLogprob[] = [];
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
   * The choices of one request (n > 1), one per params (same prompt; their own seeds and
   * matchers), sharing the prompt's prefill. Throws the engine's PromptError when it
   * refuses the prompt.
   */
  static choices(deps: GenerationDeps, each: GenerationParams[], signal?: AbortSignal): Generation[] {
    const gens = each.map((params, i) => new Generation(deps, params, signal, i, false));
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
      logprobs: params.logprobs,
      constraint: params.constraint,
      // the playground's last look at the cache (GET /v1/kv_cache/{id}); costs a GPU read only where keys were evicted
      mapAtRelease: CACHE_MAP_BINS,
      onToken: (id, lp) => this.onToken(id, lp),
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

  async *[Symbol.asyncIterator](): AsyncIterator<GenerationDelta> {
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
    for await (const d of this) s += d.text;
    return s;
  }

  /** Waits for the end; throws the ServingError of a failed request. */
  async finish(): Promise<GenerationResult> {
    await this.ended;
    if (this.error) throw this.error;
    const finishReason = this.aborted ? "abort" : this.stopHit ? "stop" : this.seq.finishReason === "length" ? "length" : "stop";
    return { finishReason, promptTokens: this.seq.prompt.length, completionTokens: this.tokens, cachedTokens: this.seq.cachedTokens, kv: this.seq.kv };
  }

  private onToken(id: number, lp?: TokenLogprobs) {
    if (this.closed) return; // lookahead tokens after a stop match or an abort
    if (lp) {
      const tl = { ...this.tokenText(id), logprob: clampLogprob(lp.logprob), top: lp.top.map((t) => ({ ...this.tokenText(t.id), logprob: clampLogprob(t.logprob) })) };
      this.logprobs.push(tl);
      this.pendingLogprobs.push(tl);
    }
    const now = performance.now();
    const m = this.deps.metrics;
    if (this.tokens === 0) {
      this.firstTokenAt = now;
      m.ttft.observe((now - this.t0) / 1000);
    } else m.itl.observe((now - this.tLast) / 1000);
    this.tLast = now;
    this.tokens++;
    // counted as they come, so a scrape during a long answer sees its tokens (the playground's tokens/s)
    m.generationTokens.inc();
    const r = this.matcher.push(this.decoder.push(id));
    this.emit(r.text);
    if (r.stopped) {
      this.stopHit = true;
      this.emit("", true);
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
      this.emit("", true);
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
    m.preemptions.inc(this.seq.preemptions);
    m.e2e.observe((this.endedAt - this.t0) / 1000);
    if (this.seq.numComputedTokens > 0) {
      m.evictedTokens.inc(this.seq.kv.evictedTokens);
      m.compressionRate.observe(this.seq.kv.compressionRate);
    }
  }

  /** Queues a delta with the logprobs since the last one; empty text only when `flush` and logprobs wait. */
  private emit(text: string, flush = false) {
    if (!text && !(flush && this.pendingLogprobs.length)) return;
    this.deltas.push({ text, logprobs: this.pendingLogprobs });
    this.pendingLogprobs = [];
    this.wake();
  }

  private tokenText(id: number) {
    const bytes = this.deps.client.tokenizer.tokenBytes(id);
    return { token: new TextDecoder().decode(bytes), bytes: [...bytes] };
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

/** JSON has no -Infinity: a token the sampler could not draw (masked) gets vLLM's -9999. */
function clampLogprob(x: number): number {
  return Number.isFinite(x) ? Math.max(x, -9999) : -9999;
}
