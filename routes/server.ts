// startServer: serving (engine + context) + Hono app + runtime adapter, and the way down.
// The CLI and the tests both start the server through here.
import { createApp } from "./app.ts";
import { startServing, type ServerContext, type ServingSetup } from "../src/serving/context.ts";
import { listen, type ConnectionLimits, type Listener } from "./adapter/index.ts";

export interface StartOptions extends Partial<Omit<ServingSetup, "modelDir" | "engine" | "bodyTimeoutS">> {
  /** timeouts and the connection cap (defaults: DEFAULTS) */
  connections?: Partial<ConnectionLimits>;
  modelDir: string;
  host?: string;
  /** 0 picks a free port */
  port?: number;
  engine?: ServingSetup["engine"];
  /** run the warm-up once listening (/health: 503 until it ends); `ready` resolves after it */
  warmUp?: boolean;
  /** hears each warm-up phase as it starts (the CLI's progress line) */
  onWarmUp?: (i: number, n: number, name: string) => void;
}

export interface RunningServer {
  readonly url: string;
  readonly listener: Listener;
  readonly ctx: ServerContext;
  /** resolves once the warm-up has ended (at once without one) */
  readonly ready: Promise<void>;
  /** Stops accepting, lets requests finish for `graceMs`, cancels the rest, frees the GPU. */
  close(graceMs?: number): Promise<void>;
}

export const DEFAULTS = {
  host: "127.0.0.1",
  port: 8080,
  maxQueue: 256,
  maxBodyBytes: 4 * 2 ** 20,
  headerTimeoutS: 10,
  bodyTimeoutS: 30,
  idleTimeoutS: 10,
  maxConnections: 1024,
};
const DEFAULT_LIMITS: ConnectionLimits = { headerTimeoutS: DEFAULTS.headerTimeoutS, bodyTimeoutS: DEFAULTS.bodyTimeoutS, idleTimeoutS: DEFAULTS.idleTimeoutS, maxConnections: DEFAULTS.maxConnections };

export async function startServer(o: StartOptions): Promise<RunningServer> {
  const log = o.log ?? (() => {});
  const limits: ConnectionLimits = { ...DEFAULT_LIMITS, ...o.connections };
  const ctx = await startServing({
    modelDir: o.modelDir,
    engine: o.engine,
    maxQueue: o.maxQueue ?? DEFAULTS.maxQueue,
    apiKey: o.apiKey ?? null,
    maxBodyBytes: o.maxBodyBytes ?? DEFAULTS.maxBodyBytes,
    compression: o.compression ?? {},
    log,
    requestLog: o.requestLog ?? null,
    logPrompts: o.logPrompts ?? false,
    bodyTimeoutS: limits.bodyTimeoutS,
    corsOrigins: o.corsOrigins ?? [],
  });
  let listener: Listener;
  try {
    listener = await listen(createApp(ctx).fetch, { host: o.host ?? DEFAULTS.host, port: o.port ?? DEFAULTS.port, limits });
  } catch (e) {
    await ctx.shutdown(0);
    throw e;
  }
  log(`serving ${ctx.opts.modelId} with ${listener.adapter} on ${listener.url}`);
  const ready = o.warmUp ? warmUp(ctx, log, o.onWarmUp) : Promise.resolve();
  let closing: Promise<void> | null = null;
  const close = (graceMs = 5000) =>
    (closing ??= (async () => {
      const drained = listener.stop(false);
      await ctx.shutdown(graceMs);
      // responses still open after their generations ended get a moment to flush
      const timedOut = await Promise.race([drained.then(() => false), new Promise<boolean>((r) => setTimeout(() => r(true), 1000))]);
      if (timedOut) await listener.stop(true);
    })());
  return { url: listener.url, listener, ctx, ready, close };
}

/** The warm-up with its closing line; a failure is logged (requests then compile as they come). */
async function warmUp(ctx: ServerContext, log: (m: string) => void, onPhase?: (i: number, n: number, name: string) => void) {
  const t0 = performance.now();
  try {
    const n = await ctx.warmUp(onPhase);
    log(`warmed up: ${n} pipelines built in ${((performance.now() - t0) / 1000).toFixed(1)} s; ready`);
  } catch (e) {
    log(`warm-up failed (${(e as Error).message}); serving, the first requests compile what they need`);
  }
}
