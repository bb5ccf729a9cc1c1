// `kvc serve`: the OpenAI-compatible HTTP server until SIGINT/SIGTERM.
import { parseArgs } from "node:util";
import { startServer } from "../routes/server.ts";
import { resolveServeConfig, serveArgOptions, settingsHelp } from "./serve-config.ts";
import { defaultModelDir } from "./model-dir.ts";

export const SERVE_HELP = `kvc serve [--model PATH] [options]

Each setting is a flag or an environment variable; the flag wins.

${settingsHelp("server")}

KV compression defaults for requests that do not set kv_compression:
${settingsHelp("kv")}

Request log: one JSON line per request on stderr (id, status, tokens, KV compression,
TTFT, duration; the prompt only with --log-prompts). Files the single binary writes
out go to KVC_CACHE_DIR (default ~/.cache/kvc).
`;

export async function serveCommand(argv: string[]) {
  const { values: a } = parseArgs({ args: argv, options: { ...serveArgOptions(), help: { type: "boolean", short: "h" } }, strict: true });
  if (a.help) {
    console.log(SERVE_HELP);
    return;
  }
  const c = resolveServeConfig(a as Record<string, string | boolean | undefined>, envVar, defaultModelDir);
  // on a terminal a log line first clears the warm-up's progress line
  const clear = stderrIsTerminal() ? "\r\x1b[K" : "";
  const log = (m: string) => console.error(`${clear}[kvc] ${m}`);
  const server = await startServer({
    modelDir: c.modelDir,
    host: c.host,
    port: c.port,
    maxQueue: c.maxQueue,
    apiKey: c.apiKey,
    maxBodyBytes: c.maxBodyBytes,
    compression: c.compression,
    engine: { kvMemory: c.kvMemory, quantize: c.quantize, prefixCaching: c.prefixCaching },
    logPrompts: c.logPrompts,
    connections: c.connections,
    corsOrigins: c.corsOrigins,
    warmUp: c.warmUp,
    onWarmUp: warmUpProgress(),
    requestLog: (entry) => console.error(JSON.stringify(entry)),
    log,
  });
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (sig: string) => {
      if (stopping) return exitNow(`${sig} again: exiting without waiting`);
      stopping = true;
      log(`${sig}: finishing in-flight requests, then shutting down`);
      server.close().then(resolve, (e) => (log(`shutdown: ${(e as Error).message}`), resolve()));
    };
    onSignal("SIGINT", () => stop("SIGINT"));
    onSignal("SIGTERM", () => stop("SIGTERM"));
  });
}

/** stderr is a terminal: the warm-up's progress line is rewritten in place there. */
function stderrIsTerminal(): boolean {
  const g = globalThis as any;
  return g.Deno ? g.Deno.stderr.isTerminal() : !!g.process?.stderr?.isTTY;
}

/** On a terminal, one line rewritten as each warm-up phase starts (the next log line replaces it); elsewhere none. */
function warmUpProgress(): ((i: number, n: number, name: string) => void) | undefined {
  if (!stderrIsTerminal()) return undefined;
  const t0 = performance.now();
  return (i, n, name) => (globalThis as any).process.stderr.write(`\r\x1b[K[kvc] warming up ${i + 1}/${n}: ${name} (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
}

function envVar(name: string): string | undefined {
  const g = globalThis as any;
  return g.Deno ? g.Deno.env.get(name) : g.process?.env?.[name];
}

function exitNow(why: string) {
  console.error(`[kvc] ${why}`);
  const g = globalThis as any;
  if (g.Deno) g.Deno.exit(130);
  else g.process.exit(130);
}

function onSignal(sig: "SIGINT" | "SIGTERM", fn: () => void) {
  const g = globalThis as any;
  if (g.Deno) g.Deno.addSignalListener(sig, fn);
  else g.process.on(sig, fn);
}
