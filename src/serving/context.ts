// ServerContext: what the routes see of the server. It owns the engine client, the
// metrics and the set of live generations, tokenizes prompts (refusing text too
// long to fit before the tokenizer spends time on it), admits requests (bounded
// queue) and shuts down in order: refuse new work, let streams finish, cancel the rest.
import { basename } from "node:path";
import type { CompressionOptions } from "../cache/compression.ts";
import { EngineClient, type EngineDevice, type EngineLimits } from "../engine/client.ts";
import { Engine, type EngineOptions } from "../engine/engine.ts";
import type { ChatMessage } from "../model/tokenizer.ts";
import { ServingError } from "./errors.ts";
import { Generation, type GenerationParams } from "./generation.ts";
import { Grammars, type GrammarConstraint, type GrammarSpec } from "./grammar.ts";
import { maxPromptChars } from "./prompt-limit.ts";
import { createServerMetrics, type ServerMetrics } from "./server-metrics.ts";
import { QueueWait } from "./queue-wait.ts";
import { CacheMaps, type CacheMapView } from "./cache-maps.ts";

export type { ChatMessage } from "../model/tokenizer.ts";
export type { CompressionOptions } from "../cache/compression.ts";

export interface ServerOptions {
  /** the id clients send as `model` (the model folder's name) */
  modelId: string;
  /** most requests waiting + running; more are refused as busy */
  maxQueue: number;
  /** requests to /v1 need `Authorization: Bearer <apiKey>` when set */
  apiKey: string | null;
  maxBodyBytes: number;
  /** longer prompt text cannot fit the context and is refused untokenized */
  maxPromptChars: number;
  /** compression applied where a request does not say otherwise */
  compression: Partial<CompressionOptions>;
  log: (msg: string) => void;
  /** receives one object per request (routes/middleware/request-log.ts); null: no request log */
  requestLog: ((entry: Record<string, unknown>) => void) | null;
  /** put prompts into the request log */
  logPrompts: boolean;
  /** a request's body must arrive within this many seconds of its headers (else 408) */
  bodyTimeoutS: number;
  /** origins CORS lets in ("*": any); empty: no CORS headers */
  corsOrigins: string[];
}

export interface ServerContext {
  readonly opts: ServerOptions;
  readonly metrics: ServerMetrics;
  /** unix seconds when the model was loaded (the `created` of /v1/models) */
  readonly created: number;
  readonly limits: EngineLimits;
  readonly device: EngineDevice;
  readonly hasChatTemplate: boolean;
  /** true while warmUp runs (/health answers 503 warming_up) */
  readonly warming: boolean;
  /**
   * Compiles every pipeline a request can need by running the engine's warm-up
   * (src/engine/warm-up.ts); requests that come meanwhile run beside it. Resolves to
   * the pipelines it built.
   */
  warmUp(onPhase?: (i: number, n: number, name: string) => void): Promise<number>;
  /** Prompt text to token ids (BOS as the model expects); a ServingError when the text cannot fit. */
  encode(text: string): number[];
  /** Messages (and tools, for the template) through the chat template to token ids; a ServingError when their text cannot fit. */
  encodeChat(messages: ChatMessage[], tools?: unknown[]): number[];
  /** Where the final user turn starts in `prompt`, the tokens of `messages` and `tools` (0: nothing before it). */
  chatPrefixEnd(messages: ChatMessage[], prompt: number[], tools?: unknown[]): number;
  /** A matcher for a grammar (constrained decoding); throws a GrammarError for one xgrammar refuses. */
  constrain(spec: GrammarSpec): Promise<GrammarConstraint>;
  /** Throws the engine's PromptError for a prompt it would refuse. */
  checkPrompt(prompt: number[]): void;
  /**
   * Queues a request (`n` choices of it sharing its prompt's K/V); throws a ServingError
   * (busy, shutting down) or the engine's PromptError.
   */
  generate(params: GenerationParams, signal?: AbortSignal, responseId?: string): Generation;
  /** `constraints`: one matcher per choice, when the answers are constrained */
  /** `responseId`: the id the client sees, under which cacheMap finds each choice (by index) */
  generateChoices(params: GenerationParams, n: number, signal?: AbortSignal, constraints?: GenerationParams["constraint"][], responseId?: string): Generation[];
  /** Choice `index` of a response's cache, head by head; null for an id not known (or no longer kept). */
  cacheMap(responseId: string, index?: number): CacheMapView | null;
  shutdown(graceMs: number): Promise<void>;
}

/** What loading takes besides the server options: the model folder and the engine's options. */
export interface ServingSetup extends Omit<ServerOptions, "modelId" | "maxPromptChars"> {
  modelDir: string;
  engine?: Omit<EngineOptions, "log">;
}

/** Loads the model onto the GPU and starts serving it. */
export async function startServing(o: ServingSetup): Promise<ServerContext> {
  const { modelDir, engine: engineOpts, ...opts } = o;
  const engine = await Engine.load(modelDir, { ...engineOpts, log: o.log });
  return createServerContext(new EngineClient(engine, o.log), {
    ...opts,
    modelId: basename(modelDir.replace(/\/+$/, "")).replace(/\.gguf$/, ""),
    maxPromptChars: maxPromptChars(engine.tokenizer, engine.cfg.maxContext),
  });
}

export function createServerContext(client: EngineClient, opts: ServerOptions): ServerContext {
  const metrics = createServerMetrics(client, opts.modelId);
  const live = new Set<Generation>();
  const queueWait = new QueueWait();
  const maps = new CacheMaps(client);
  let closing = false;
  let warming = false;
  client.start();
  const tk = client.tokenizer;
  const grammars = new Grammars(tk, client.limits.vocab, client.eosIds);

  function checkText(chars: number) {
    if (chars > opts.maxPromptChars) throw new ServingError({ kind: "text_too_long", chars, maxChars: opts.maxPromptChars, maxContext: client.limits.maxContext });
  }

  function generate(params: GenerationParams, signal?: AbortSignal, responseId?: string): Generation {
    return generateChoices(params, 1, signal, undefined, responseId)[0];
  }

  function generateChoices(params: GenerationParams, n: number, signal?: AbortSignal, constraints?: GenerationParams["constraint"][], responseId?: string): Generation[] {
    if (closing) throw new ServingError({ kind: "shutting_down" });
    const { waiting, running } = client.stats();
    const queued = waiting + running;
    if (queued >= opts.maxQueue) {
      metrics.queueFull.inc();
      throw new ServingError({ kind: "busy", queued, maxQueue: opts.maxQueue, retryAfterS: queueWait.retryAfterS(queued - opts.maxQueue + 1) });
    }
    const deps = { client, metrics };
    // choice i samples with seed + i and decodes under its own matcher (one holds one answer's state)
    const each = Array.from({ length: n }, (_, i) => ({ ...params, sampling: { ...params.sampling, seed: (params.sampling.seed + i) >>> 0 }, constraint: constraints?.[i] ?? params.constraint }));
    const gens = n === 1 ? [new Generation(deps, each[0], signal)] : Generation.choices(deps, each, signal);
    gens.forEach((gen, i) => {
      live.add(gen);
      if (responseId) maps.track(responseId, gen);
      gen.ended.then(() => {
        each[i].constraint?.dispose?.();
        live.delete(gen);
        if (gen.index === 0) queueWait.finished();
      });
    });
    return gens;
  }

  async function shutdown(graceMs: number) {
    closing = true;
    const deadline = Date.now() + graceMs;
    while (live.size && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    if (live.size) opts.log(`cancelling ${live.size} request(s) still running`);
    for (const g of live) g.fail(new ServingError({ kind: "shut_down" }));
    await Promise.all([...live].map((g) => g.ended));
    await client.stop();
    client.destroy();
  }

  return {
    opts,
    metrics,
    created: Math.floor(Date.now() / 1000),
    limits: client.limits,
    device: client.device,
    hasChatTemplate: tk.hasChatTemplate,
    get warming() {
      return warming;
    },
    async warmUp(onPhase) {
      warming = true;
      try {
        return await client.warmUp(onPhase);
      } finally {
        warming = false;
      }
    },
    encode(text) {
      checkText(text.length);
      return tk.encode(text);
    },
    encodeChat(messages, tools) {
      checkText(messages.reduce((n, m) => n + m.content.length, 0) + (tools ? JSON.stringify(tools).length : 0));
      return tk.encodeChat(messages, tools);
    },
    chatPrefixEnd(messages, prompt, tools) {
      let last = messages.length - 1;
      while (last >= 0 && messages[last].role !== "user") last--;
      if (last <= 0) return 0;
      const head = tk.encode(tk.renderChat(messages.slice(0, last), false, tools), false);
      let i = 0;
      while (i < head.length && i < prompt.length && head[i] === prompt[i]) i++;
      return i;
    },
    constrain: (spec) => grammars.constraint(spec),
    checkPrompt: (prompt) => client.checkPrompt(prompt),
    generate,
    generateChoices,
    cacheMap: (id, index) => maps.view(id, index),
    shutdown,
  };
}
