// startServer: engine + context + Hono app + runtime adapter, and the way down.
// The CLI and the tests both start the server through here.
import { basename } from "node:path";
import { Engine, type EngineOptions } from "../src/engine/engine.ts";
import { createApp } from "./app.ts";
import { createServerContext, type ServerContext, type ServerOptions } from "../src/serving/context.ts";
import { listen, type Listener } from "./adapter/index.ts";
import { maxPromptChars } from "../src/serving/prompt-limit.ts";

export interface StartOptions extends Partial<Omit<ServerOptions, "modelId" | "maxPromptChars">> {
  modelDir: string;
  host?: string;
  /** 0 picks a free port */
  port?: number;
  engine?: Omit<EngineOptions, "log">;
}

export interface RunningServer {
  readonly url: string;
  readonly listener: Listener;
  readonly ctx: ServerContext;
  /** Stops accepting, lets requests finish for `graceMs`, cancels the rest, frees the GPU. */
  close(graceMs?: number): Promise<void>;
}

export const DEFAULTS = { host: "127.0.0.1", port: 8080, maxQueue: 256, maxBodyBytes: 4 * 2 ** 20 };

export async function startServer(o: StartOptions): Promise<RunningServer> {
  const log = o.log ?? (() => {});
  const engine = await Engine.load(o.modelDir, { ...o.engine, log });
  const ctx = createServerContext(engine, {
    modelId: basename(o.modelDir.replace(/\/+$/, "")).replace(/\.gguf$/, ""),
    maxQueue: o.maxQueue ?? DEFAULTS.maxQueue,
    apiKey: o.apiKey ?? null,
    maxBodyBytes: o.maxBodyBytes ?? DEFAULTS.maxBodyBytes,
    maxPromptChars: maxPromptChars(engine.tokenizer, engine.cfg.maxContext),
    compression: o.compression ?? {},
    log,
    requestLog: o.requestLog ?? null,
    logPrompts: o.logPrompts ?? false,
  });
  let listener: Listener;
  try {
    listener = await listen(createApp(ctx).fetch, { host: o.host ?? DEFAULTS.host, port: o.port ?? DEFAULTS.port });
  } catch (e) {
    await ctx.shutdown(0);
    throw e;
  }
  log(`serving ${ctx.opts.modelId} with ${listener.adapter} on ${listener.url}`);
  let closing: Promise<void> | null = null;
  const close = (graceMs = 5000) =>
    (closing ??= (async () => {
      const drained = listener.stop(false);
      await ctx.shutdown(graceMs);
      // responses still open after their generations ended get a moment to flush
      const timedOut = await Promise.race([drained.then(() => false), new Promise<boolean>((r) => setTimeout(() => r(true), 1000))]);
      if (timedOut) await listener.stop(true);
    })());
  return { url: listener.url, listener, ctx, close };
}
