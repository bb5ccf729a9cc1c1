// ServerContext: what the routes see of the server. It owns the engine loop, the
// metrics and the set of live generations, admits requests (bounded queue) and
// shuts down in order: refuse new work, let streams finish, cancel the rest.
import type { Engine } from "../engine/engine.ts";
import type { CompressionOptions } from "../cache/compression.ts";
import { EngineLoop } from "./engine-loop.ts";
import { createServerMetrics, type ServerMetrics } from "./server-metrics.ts";
import { Generation, type GenerationParams } from "./generation.ts";
import { ApiError } from "./api-error.ts";
import { QueueWait } from "./queue-wait.ts";

export interface ServerOptions {
  /** the id clients send as `model` (the model folder's name) */
  modelId: string;
  /** most requests waiting + running; more get 429 */
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
  readonly engine: Engine;
  readonly opts: ServerOptions;
  readonly metrics: ServerMetrics;
  /** unix seconds when the model was loaded (the `created` of /v1/models) */
  readonly created: number;
  generate(params: GenerationParams, signal?: AbortSignal): Generation;
  shutdown(graceMs: number): Promise<void>;
}

export function createServerContext(engine: Engine, opts: ServerOptions): ServerContext {
  const loop = new EngineLoop(engine, opts.log);
  const metrics = createServerMetrics(engine, opts.modelId);
  const live = new Set<Generation>();
  const queueWait = new QueueWait();
  let closing = false;
  loop.start();

  function generate(params: GenerationParams, signal?: AbortSignal): Generation {
    if (closing) throw new ApiError(503, "the server is shutting down", null, "server_shutting_down");
    const queued = engine.waiting.length + engine.running.length;
    if (queued >= opts.maxQueue) {
      metrics.queueFull.inc();
      const wait = queueWait.retryAfterS(queued - opts.maxQueue + 1);
      throw new ApiError(429, `the server is busy: ${queued} requests are queued or running (--max-queue ${opts.maxQueue}); retry in ${wait} s`, null, "queue_full", undefined, { "Retry-After": String(wait) });
    }
    let gen: Generation;
    try {
      gen = new Generation({ engine, loop, metrics }, params, signal);
    } catch (e) {
      throw e instanceof ApiError ? e : new ApiError(400, (e as Error).message);
    }
    live.add(gen);
    gen.ended.then(() => {
      live.delete(gen);
      queueWait.finished();
    });
    return gen;
  }

  async function shutdown(graceMs: number) {
    closing = true;
    const deadline = Date.now() + graceMs;
    while (live.size && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    if (live.size) opts.log(`cancelling ${live.size} request(s) still running`);
    for (const g of live) g.fail(new ApiError(503, "the server shut down before this request finished", null, "server_shutdown"));
    await Promise.all([...live].map((g) => g.ended));
    await loop.stop();
    engine.destroy();
  }

  return { engine, opts, metrics, created: Math.floor(Date.now() / 1000), generate, shutdown };
}
