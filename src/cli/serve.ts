// `kvc serve`: the OpenAI-compatible HTTP server until SIGINT/SIGTERM.
import { parseArgs } from "node:util";
import * as v from "valibot";
import { parseBytes } from "../cache/kv-cache.ts";
import type { CompressionOptions } from "../cache/compression.ts";
import { KvCompressionSchema, toCompressionOptions } from "../../routes/kv-compression.ts";
import { DEFAULTS, startServer } from "../server/server.ts";
import { defaultModelDir } from "./model-dir.ts";

export const SERVE_HELP = `kvc serve [--model DIR] [options]

  --model DIR                  HF model folder (default: the embedded kvc-nano); its name is the model id
  --host HOST                  address to listen on (default ${DEFAULTS.host})
  --port N                     port (default ${DEFAULTS.port}; 0 picks a free one)
  --kv-memory SIZE             KV cache budget, e.g. 512MiB or 2GiB
  --max-queue N                most requests waiting + running; more get 429 (default ${DEFAULTS.maxQueue})
  --api-key KEY                require "Authorization: Bearer KEY" on /v1 (also KVC_API_KEY)
  --max-body SIZE              largest request body (default 4MiB)

KV compression defaults for requests that do not set kv_compression:
  --kv-method M                none | kvcompress | snapkv | streaming | kvcrush
  --kv-rate R                  keep 1/R of each sequence's K/V (R >= 1)
  --kv-max-tokens N            budget: average tokens kept per (layer, KV head)
  --kv-protected-window N      most recent positions never evicted
  --kv-observation-window N    last prompt queries that score the keys
  --kv-interval N              decode steps between compressions
  --kv-compress-once           compress only after the prefill
  --kv-crush-ratio X           KVCrush: share of the budget for representatives, in [0, 1)
  --kv-crush-anchor A          KVCrush anchor: mean | alternate | random
`;

/** each --kv-* flag and the kv_compression field it sets */
const KV_FLAGS = {
  "kv-method": "method",
  "kv-rate": "rate",
  "kv-max-tokens": "max_cache_tokens",
  "kv-protected-window": "protected_window",
  "kv-observation-window": "observation_window",
  "kv-interval": "interval",
  "kv-crush-ratio": "crush_ratio",
  "kv-crush-anchor": "crush_anchor",
} as const;
const TEXT_FIELDS = new Set(["method", "crush_anchor"]);

export async function serveCommand(argv: string[]) {
  const { values: a } = parseArgs({
    args: argv,
    options: {
      model: { type: "string" },
      host: { type: "string" },
      port: { type: "string" },
      "kv-memory": { type: "string" },
      "max-queue": { type: "string" },
      "api-key": { type: "string" },
      "max-body": { type: "string" },
      "kv-compress-once": { type: "boolean" },
      ...Object.fromEntries(Object.keys(KV_FLAGS).map((k) => [k, { type: "string" as const }])),
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (a.help) {
    console.log(SERVE_HELP);
    return;
  }
  const flags = a as Record<string, string | boolean | undefined>;
  const log = (m: string) => console.error(`[kvc] ${m}`);
  const server = await startServer({
    modelDir: a.model ?? defaultModelDir(),
    host: a.host ?? DEFAULTS.host,
    port: intFlag(a.port, "port", DEFAULTS.port, 0, 65535),
    maxQueue: intFlag(a["max-queue"], "max-queue", DEFAULTS.maxQueue, 1, 1e9),
    apiKey: a["api-key"] ?? envVar("KVC_API_KEY") ?? null,
    maxBodyBytes: a["max-body"] ? parseBytes(a["max-body"]) : DEFAULTS.maxBodyBytes,
    compression: compressionDefaults(flags),
    engine: { kvMemory: a["kv-memory"] ? parseBytes(a["kv-memory"]) : undefined },
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

/** The --kv-* flags checked by the same schema as a request's kv_compression. */
function compressionDefaults(flags: Record<string, string | boolean | undefined>): Partial<CompressionOptions> {
  const raw: Record<string, unknown> = {};
  for (const [flag, field] of Object.entries(KV_FLAGS)) {
    const s = flags[flag];
    if (typeof s === "string") raw[field] = TEXT_FIELDS.has(field) ? s : s.trim() === "" ? NaN : Number(s);
  }
  if (flags["kv-compress-once"]) raw.compress_once = true;
  const r = v.safeParse(KvCompressionSchema, raw, { abortEarly: true });
  if (!r.success) {
    const field = String((r.issues[0].path?.[0] as { key?: unknown } | undefined)?.key);
    const flag = Object.entries(KV_FLAGS).find(([, f]) => f === field)?.[0] ?? field;
    throw new Error(`--${flag}: ${r.issues[0].message}`);
  }
  const opts = toCompressionOptions(r.output);
  if (opts.method && opts.method !== "none" && opts.rate == null && opts.maxCacheTokens == null) {
    throw new Error(`--kv-method ${opts.method} needs a budget: --kv-rate or --kv-max-tokens`);
  }
  return opts;
}

function intFlag(s: string | undefined, name: string, def: number, min: number, max: number): number {
  if (s === undefined) return def;
  const x = Number(s);
  if (!Number.isInteger(x) || x < min || x > max || s.trim() === "") throw new Error(`--${name} must be an integer in [${min}, ${max}] (got "${s}")`);
  return x;
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
