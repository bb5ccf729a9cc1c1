// kvc serve's settings. Each comes from its flag, else its KVC_* environment
// variable, else its default; all are checked with valibot before anything loads,
// and every bad one is reported at once, named as the user gave it (--port or KVC_PORT).
import { statSync } from "node:fs";
import * as v from "valibot";
import { parseBytes } from "../src/cache/kv-cache.ts";
import { budgetProblem, SETTABLE, settingFromText, settingOf, SWITCH_ON, SWITCH_WORDS, withImpliedMethod, type CompressionOptions } from "../src/cache/compression.ts";
import { DEFAULTS } from "../routes/server.ts";
import { settingHelp } from "./kv-flags.ts";
import { ON_LOAD_QUANTS, type OnLoadQuant } from "../src/model/quantize-weights.ts";
import type { ConnectionLimits } from "../routes/adapter/types.ts";

export interface Setting {
  flag: string;
  env: string;
  /** the value's placeholder in the help; none for a switch */
  arg?: string;
  help: string;
  /** the kv_compression field this sets (server-wide default for requests) */
  kvField?: string;
}

/** The server's own settings, in the order of the help; the --kv-* ones follow from the compression table. */
const SERVER_SETTINGS = {
  model: { flag: "model", env: "KVC_MODEL", arg: "PATH", help: "HF model folder or GGUF file; its name (less .gguf) is the model id (default: the embedded kvc-nano)" },
  quantize: { flag: "quantize", env: "KVC_QUANTIZE", arg: "TYPE", help: "quantize f16 weights as they load: q8_0 | q4_0 | q4_k (default: keep them)" },
  host: { flag: "host", env: "KVC_HOST", arg: "HOST", help: `address to listen on; 0.0.0.0 for every interface (default ${DEFAULTS.host})` },
  port: { flag: "port", env: "KVC_PORT", arg: "N", help: `port; 0 picks a free one (default ${DEFAULTS.port})` },
  apiKey: { flag: "api-key", env: "KVC_API_KEY", arg: "KEY", help: 'require "Authorization: Bearer KEY" on /v1 (default: none)' },
  kvMemory: { flag: "kv-memory", env: "KVC_KV_MEMORY", arg: "SIZE", help: "KV cache budget, e.g. 512MiB or 2GiB (default: 1GiB, or less where the adapter binds less)" },
  maxQueue: { flag: "max-queue", env: "KVC_MAX_QUEUE", arg: "N", help: `most requests waiting + running; more get 429 (default ${DEFAULTS.maxQueue})` },
  maxBody: { flag: "max-body", env: "KVC_MAX_BODY", arg: "SIZE", help: "largest request body; larger get 413 (default 4MiB)" },
  logPrompts: { flag: "log-prompts", env: "KVC_LOG_PROMPTS", help: "put the prompt in each request log line (default: never)" },
  noPrefixCaching: { flag: "no-prefix-caching", env: "KVC_NO_PREFIX_CACHING", help: "turn automatic prefix caching off (default: on; n > 1 choices still share their prompt's blocks)" },
  headerTimeout: { flag: "header-timeout", env: "KVC_HEADER_TIMEOUT", arg: "S", help: `seconds to receive a request's headers (default ${DEFAULTS.headerTimeoutS}; Bun: fixed at 10)` },
  bodyTimeout: { flag: "body-timeout", env: "KVC_BODY_TIMEOUT", arg: "S", help: `seconds to receive a request's body; slower ones get 408 (default ${DEFAULTS.bodyTimeoutS})` },
  idleTimeout: { flag: "idle-timeout", env: "KVC_IDLE_TIMEOUT", arg: "S", help: `seconds a keep-alive connection may wait for its next request (default ${DEFAULTS.idleTimeoutS})` },
  maxConnections: { flag: "max-connections", env: "KVC_MAX_CONNECTIONS", arg: "N", help: `most open connections (Bun: requests in progress); more get 503 (default ${DEFAULTS.maxConnections})` },
  noWarmup: { flag: "no-warmup", env: "KVC_NO_WARMUP", help: "listen without compiling the pipelines first: the first requests then wait for their compiles (default: warm up first; /health says warming_up until done)" },
  corsOrigin: { flag: "cors-origin", env: "KVC_CORS_ORIGIN", arg: "ORIGIN", help: 'allow browsers from ORIGIN ("*" for any, or comma-separated origins) to call the API (default: off)' },
} as const satisfies Record<string, Setting>;

/** Every serve setting, in the order of the help: the server's, then each settable compression option. */
export const SERVE_SETTINGS: Record<string, Setting> = {
  ...SERVER_SETTINGS,
  ...Object.fromEntries(SETTABLE.map((s) => [s.key, { flag: s.flag!, env: s.env!, arg: s.arg, kvField: s.field!, help: settingHelp(s) }])),
};

type Key = string;
const KEYS = Object.keys(SERVE_SETTINGS);
const setting = (k: Key): Setting => SERVE_SETTINGS[k];

export interface ServeConfig {
  modelDir: string;
  host: string;
  port: number;
  apiKey: string | null;
  /** undefined: the engine's default budget */
  kvMemory: number | undefined;
  /** on-load quantization of f16 weights, if any */
  quantize?: OnLoadQuant;
  maxQueue: number;
  maxBodyBytes: number;
  logPrompts: boolean;
  /** automatic prefix caching (the engine's prefixCaching) */
  prefixCaching: boolean;
  /** connection limits (routes/adapter/types.ts) */
  connections: ConnectionLimits;
  /** origins allowed by CORS; empty: CORS off */
  corsOrigins: string[];
  /** compile every pipeline (run the warm-up) before /health says ok */
  warmUp: boolean;
  /** defaults for requests that set no kv_compression */
  compression: Partial<CompressionOptions>;
}

/** The options `parseArgs` takes for these settings. */
export function serveArgOptions() {
  return Object.fromEntries(KEYS.map((k) => [setting(k).flag, { type: setting(k).arg ? ("string" as const) : ("boolean" as const) }]));
}

/** The settings' part of `kvc serve --help`: flag, environment variable, meaning. */
export function settingsHelp(which: "server" | "kv"): string {
  const rows = KEYS.filter((k) => (which === "kv") === !!setting(k).kvField).map((k) => {
    const s = setting(k);
    return [`--${s.flag}${s.arg ? ` ${s.arg}` : ""}`, s.env, s.help];
  });
  const w0 = Math.max(...rows.map((r) => r[0].length)) + 2;
  const w1 = Math.max(...rows.map((r) => r[1].length)) + 2;
  return rows.map(([f, e, h]) => `  ${f.padEnd(w0)}${e.padEnd(w1)}${h}`).join("\n");
}

const integer = (min: number, max: number) => {
  const msg = `must be an integer in [${min}, ${max}]`;
  return v.pipe(v.string(), v.regex(/^\s*\d+\s*$/, msg), v.transform(Number), v.minValue(min, msg), v.maxValue(max, msg));
};
const size = (min: number, what: string) =>
  v.pipe(
    v.string(),
    v.rawTransform(({ dataset, addIssue, NEVER }) => {
      try {
        return parseBytes(dataset.value);
      } catch (e) {
        addIssue({ message: (e as Error).message });
        return NEVER;
      }
    }),
    v.minValue(min, `must be at least ${what}`),
  );
const boolean = v.pipe(
  v.string(),
  v.transform((s) => s.trim().toLowerCase()),
  v.picklist(SWITCH_WORDS, `must be one of ${SWITCH_WORDS.join(", ")}`),
  v.transform((s) => SWITCH_ON.includes(s)),
);
const isModel = (p: string) => {
  try {
    const st = statSync(p);
    return st.isDirectory() || (p.endsWith(".gguf") && st.isFile());
  } catch {
    return false;
  }
};

/** The server settings (the --kv-* ones go through the request schema instead). */
const ServerSettingsSchema = v.object({
  model: v.optional(v.pipe(v.string(), v.minLength(1, "must name a folder or a .gguf file"), v.check(isModel, "is neither a folder nor a .gguf file"))),
  quantize: v.optional(v.picklist(ON_LOAD_QUANTS, `must be one of ${ON_LOAD_QUANTS.join(", ")}`)),
  host: v.optional(v.pipe(v.string(), v.regex(/^[\w.:%-]+$/, "must be a host name or an IP address"))),
  port: v.optional(integer(0, 65535)),
  apiKey: v.optional(v.pipe(v.string(), v.regex(/^\S+$/, "must be non-empty without spaces"))),
  kvMemory: v.optional(size(2 ** 20, "1MiB")),
  maxQueue: v.optional(integer(1, 1e9)),
  maxBody: v.optional(size(1024, "1KiB")),
  logPrompts: v.optional(boolean),
  noWarmup: v.optional(boolean),
  noPrefixCaching: v.optional(boolean),
  headerTimeout: v.optional(integer(1, 3600)),
  bodyTimeout: v.optional(integer(1, 3600)),
  // Bun takes at most 255 s
  idleTimeout: v.optional(integer(1, 255)),
  maxConnections: v.optional(integer(1, 1e6)),
  corsOrigin: v.optional(v.pipe(v.string(), v.regex(/^(\*|https?:\/\/[^\s,/]+(\s*,\s*https?:\/\/[^\s,/]+)*)$/, 'must be "*" or origins like https://app.example.com, comma-separated'))),
});

/** A setting as the user gave it: `--port` or `KVC_PORT`, and the text. */
type Source = { name: string; raw: string; isSwitch: boolean };

/**
 * Flags win over the environment, which wins over the defaults. Throws one Error
 * listing every bad setting as `--flag: message (got "value")` or `KVC_X: ...`.
 */
export function resolveServeConfig(flags: Record<string, string | boolean | undefined>, env: (name: string) => string | undefined, defaultModelDir: () => string): ServeConfig {
  const given = new Map<Key, Source>();
  for (const k of KEYS) {
    const s = setting(k);
    const f = flags[s.flag];
    const e = env(s.env);
    if (f !== undefined && f !== false) given.set(k, { name: `--${s.flag}`, raw: f === true ? "true" : f, isSwitch: f === true });
    else if (e !== undefined && e !== "") given.set(k, { name: s.env, raw: e, isSwitch: false });
  }
  const problems: string[] = [];
  /** valibot's own messages say what they received; ours get the text appended */
  const problem = (src: Source | undefined, message: string, showRaw = true) =>
    problems.push(src ? `${src.name}: ${message}${showRaw && !src.isSwitch ? ` (got "${src.raw}")` : ""}` : message);

  const server = v.safeParse(ServerSettingsSchema, Object.fromEntries([...given].filter(([k]) => !setting(k).kvField).map(([k, s]) => [k, s.raw])));
  if (!server.success) for (const i of server.issues) problem(given.get(issueKey(i) as Key), i.message);

  // the --kv-* settings: the compression table's parser, the one the CLI and requests use
  const kv: Partial<Record<keyof CompressionOptions, unknown>> = {};
  for (const c of SETTABLE) {
    const src = given.get(c.key);
    if (!src) continue;
    const r = settingFromText(c, src.raw);
    if (r.ok) kv[c.key] = r.value;
    else problem(src, r.message, false);
  }
  const compression = withImpliedMethod(kv as Partial<CompressionOptions>);
  const budget = budgetProblem(compression, (c) => `--${c.flag}`);
  if (budget) problem(given.get("method"), `${budget} (${settingOf("rate").env} or ${settingOf("maxCacheTokens").env})`, false);
  if (problems.length || !server.success) throw new Error(problems.length === 1 ? problems[0] : `bad settings:\n  ${problems.join("\n  ")}`);

  const o = server.output;
  return {
    modelDir: o.model ?? defaultModelDir(),
    host: o.host ?? DEFAULTS.host,
    port: o.port ?? DEFAULTS.port,
    apiKey: o.apiKey ?? null,
    kvMemory: o.kvMemory,
    quantize: o.quantize,
    maxQueue: o.maxQueue ?? DEFAULTS.maxQueue,
    maxBodyBytes: o.maxBody ?? DEFAULTS.maxBodyBytes,
    logPrompts: o.logPrompts ?? false,
    prefixCaching: !(o.noPrefixCaching ?? false),
    connections: {
      headerTimeoutS: o.headerTimeout ?? DEFAULTS.headerTimeoutS,
      bodyTimeoutS: o.bodyTimeout ?? DEFAULTS.bodyTimeoutS,
      idleTimeoutS: o.idleTimeout ?? DEFAULTS.idleTimeoutS,
      maxConnections: o.maxConnections ?? DEFAULTS.maxConnections,
    },
    corsOrigins: o.corsOrigin ? o.corsOrigin.split(",").map((x) => x.trim()) : [],
    warmUp: !o.noWarmup,
    compression,
  };
}

function issueKey(issue: v.BaseIssue<unknown>): string {
  return String((issue.path?.[0] as { key?: unknown } | undefined)?.key);
}
