// Per-request KV compression settings: one table (COMPRESSION_SETTINGS) says, for
// each option, its type and range, default, help and the names it goes by on the
// command line (--kv-*), in the environment (KVC_KV_*) and in a request
// (kv_compression.*). The CLI flags, serve's environment reader, the request
// schema and the help text are all derived from it (cli/kv-flags.ts,
// cli/serve-config.ts, routes/schemas/kv-compression.ts), so the three agree.
import * as v from "valibot";

/** Every method a request can name; src/cache/methods.ts says what each runs. */
export const METHOD_NAMES = ["none", "kvcompress", "snapkv", "streaming", "kvcrush"] as const;
export type CompressionMethod = (typeof METHOD_NAMES)[number];
export const CRUSH_ANCHORS = ["mean", "alternate", "random"] as const;
export type CrushAnchor = (typeof CRUSH_ANCHORS)[number];
export const CRUSH_BASES = ["kvcompress", "snapkv"] as const;
export type CrushBase = (typeof CRUSH_BASES)[number];

/**
 * How kvcompress splits its budget over (layer, KV head) pairs. Each sorts every head's
 * keys by pooled score, cuts them into chunks and evicts the lowest chunks of a group
 * of heads first; they differ in the groups, each group's budget, and how chunk means
 * compare across heads (policies.ts, allocate):
 *   global       KV-Compress as published: all heads one group, raw means
 *   global-norm  all heads one group, means over the head's total score
 *   layer        the same budget in every layer, raw means (the fork's even-layer split)
 *   ada          AdaKV: the same budget in every layer, means over the head's total
 *                score, and each head keeps at least a fifth of its even share
 *   pyramid      PyramidKV's layer budgets (more below, less above), inside a layer as ada
 */
export const ALLOCATIONS = ["global", "global-norm", "layer", "ada", "pyramid"] as const;
export type Allocation = (typeof ALLOCATIONS)[number];

export interface CompressionOptions {
  method: CompressionMethod;
  /** keep total / rate of the sequence's K/V entries (>= 1); ignored when maxCacheTokens is set */
  rate: number | null;
  /** budget as an average number of tokens per (layer, KV head) */
  maxCacheTokens: number | null;
  /** most recent positions never evicted */
  protectedWindow: number;
  /** last prompt queries whose attention scores the keys */
  observationWindow: number;
  /** decode steps between compressions in continual mode */
  interval: number;
  /** compress only once, after the prefill */
  compressOnce: boolean;
  /** KVCrush: share of the budget given to representatives of evicted tokens */
  crushRatio: number;
  crushAnchor: CrushAnchor;
  /** KVCrush: the importance method it composes with */
  crushBase: CrushBase;
  /** max-pool width along the sequence for the scores (KV-Compress kernel 7) */
  poolKernel: number;
  /** kvcompress: how the budget is split over layers and heads */
  allocation: Allocation;
  /** keys per eviction chunk (KV-Compress evicts block-sized chunks) */
  chunkSize: number;
  /**
   * Reusable compressed prefix: compress the prompt's prefix (up to the last full block
   * before the final user turn) once, query-agnostically, cache that compressed state
   * and start later requests with the same prefix and settings from it.
   */
  cachePrefix: boolean;
}

/** A setting's values: integers from `min`, numbers in [min, below), a switch, or one of a list. */
export type SettingType =
  | { kind: "int"; min: number }
  | { kind: "number"; min: number; below?: number }
  | { kind: "bool" }
  | { kind: "enum"; values: readonly string[] };

export interface CompressionSetting<K extends keyof CompressionOptions = keyof CompressionOptions> {
  key: K;
  type: SettingType;
  default: CompressionOptions[K];
  help: string;
  /** `--kv-${flag}`-style flag, its KVC_* variable and its kv_compression field; null: not settable (fixed by the method) */
  flag: string | null;
  env: string | null;
  field: string | null;
  /** the value's placeholder in the help; none for a switch */
  arg?: string;
}

const setting = <K extends keyof CompressionOptions>(s: CompressionSetting<K>) => s;
const exposed = <K extends keyof CompressionOptions>(key: K, name: string, arg: string | undefined, type: SettingType, def: CompressionOptions[K], help: string, field: string) =>
  setting({ key, type, default: def, help, flag: `kv-${name}`, env: `KVC_KV_${name.toUpperCase().replaceAll("-", "_")}`, field, arg });

/**
 * Every compression option, in help order. Where the copies this replaced disagreed,
 * the answer here holds everywhere: a protected window of 0 (nothing protected) and
 * kvcompress's allocation are accepted by the CLI, serve and requests alike.
 */
export const COMPRESSION_SETTINGS = [
  exposed("method", "method", "M", { kind: "enum", values: METHOD_NAMES }, "none", METHOD_NAMES.join(" | "), "method"),
  exposed("rate", "rate", "R", { kind: "number", min: 1 }, null, "keep 1/R of each sequence's K/V entries (R >= 1)", "rate"),
  exposed("maxCacheTokens", "max-tokens", "N", { kind: "int", min: 1 }, null, "or keep N tokens per (layer, KV head) on average", "max_cache_tokens"),
  exposed("protectedWindow", "protected-window", "N", { kind: "int", min: 0 }, 32, "most recent positions never evicted", "protected_window"),
  exposed("observationWindow", "observation-window", "N", { kind: "int", min: 1 }, 8, "last prompt queries that score the keys", "observation_window"),
  exposed("interval", "interval", "N", { kind: "int", min: 1 }, 16, "decode steps between compressions", "interval"),
  exposed("compressOnce", "compress-once", undefined, { kind: "bool" }, false, "compress only after the prefill", "compress_once"),
  exposed("crushRatio", "crush-ratio", "X", { kind: "number", min: 0, below: 1 }, 0.25, "KVCrush: share of the budget for representatives, in [0, 1)", "crush_ratio"),
  exposed("crushAnchor", "crush-anchor", "A", { kind: "enum", values: CRUSH_ANCHORS }, "mean", `KVCrush anchor: ${CRUSH_ANCHORS.join(" | ")}`, "crush_anchor"),
  exposed("crushBase", "crush-base", "B", { kind: "enum", values: CRUSH_BASES }, "kvcompress", `KVCrush importance method: ${CRUSH_BASES.join(" | ")}`, "crush_base"),
  exposed("allocation", "allocation", "A", { kind: "enum", values: ALLOCATIONS }, "ada", `kvcompress: how the budget is split over layers and heads, ${ALLOCATIONS.join(" | ")}`, "allocation"),
  exposed("cachePrefix", "cache-prefix", undefined, { kind: "bool" }, false, "compress the prompt's prefix (before the final user turn) once, query-agnostically, and reuse it for requests with the same prefix and settings", "cache_prefix"),
  // fixed by the methods as the papers run them: not settable
  setting({ key: "poolKernel", type: { kind: "int", min: 1 }, default: 7, help: "max-pool width of the scores along the sequence", flag: null, env: null, field: null }),
  setting({ key: "chunkSize", type: { kind: "int", min: 1 }, default: 16, help: "keys per eviction chunk", flag: null, env: null, field: null }),
] as const satisfies readonly CompressionSetting[];

export const DEFAULT_COMPRESSION = Object.fromEntries(COMPRESSION_SETTINGS.map((s) => [s.key, s.default])) as unknown as CompressionOptions;

/** The settings a user can set (flag, variable and request field). */
export const SETTABLE = COMPRESSION_SETTINGS.filter((s) => s.flag !== null) as CompressionSetting[];

export const settingOf = (key: keyof CompressionOptions): CompressionSetting => COMPRESSION_SETTINGS.find((s) => s.key === key)! as CompressionSetting;

/** The valibot schema of a setting's value (a JSON value: number, boolean or string). */
export function settingSchema(s: CompressionSetting): v.GenericSchema<unknown, unknown> {
  const t = s.type;
  switch (t.kind) {
    case "int":
      return v.pipe(v.number(), v.safeInteger(), v.minValue(t.min));
    case "number":
      return t.below === undefined ? v.pipe(v.number(), v.finite(), v.minValue(t.min)) : v.pipe(v.number(), v.minValue(t.min), v.ltValue(t.below));
    case "bool":
      return v.boolean();
    case "enum":
      return v.picklist(t.values);
  }
}

/** How a switch is spelt in text (an environment variable): these turn it on, the rest of SWITCH_WORDS off. */
export const SWITCH_ON = ["1", "true", "yes", "on"];
export const SWITCH_WORDS = [...SWITCH_ON, "0", "false", "no", "off"];

/**
 * A setting's value from text (a flag's or an environment variable's), checked by the
 * same schema as a request's value. Returns the value or the problem's message (which
 * quotes what it got).
 */
export function settingFromText(s: CompressionSetting, text: string): { ok: true; value: unknown } | { ok: false; message: string } {
  let value: unknown = text;
  if (s.type.kind === "int" || s.type.kind === "number") value = text.trim() === "" ? NaN : Number(text);
  else if (s.type.kind === "bool") {
    const w = text.trim().toLowerCase();
    if (!SWITCH_WORDS.includes(w)) return { ok: false, message: `must be one of ${SWITCH_WORDS.join(", ")} (got "${text}")` };
    value = SWITCH_ON.includes(w);
  }
  const r = v.safeParse(settingSchema(s), value);
  return r.success ? { ok: true, value: r.output } : { ok: false, message: r.issues[0].message };
}

/**
 * A budget with no method means KV-Compress (as on the KV-Compress fork, where a
 * budget is all a request sends): `asked` is what one source set, `over` what it
 * lands on (a request's server defaults), whose own method wins when it evicts.
 */
export function withImpliedMethod(asked: Partial<CompressionOptions>, over: Partial<CompressionOptions> = {}): Partial<CompressionOptions> {
  const merged = { ...over, ...asked };
  const budget = asked.rate != null || asked.maxCacheTokens != null;
  return asked.method === undefined && (merged.method ?? "none") === "none" && budget ? { ...merged, method: "kvcompress" } : merged;
}

/** A method that evicts needs a budget; the message names the two ways to give one, as `name` spells them. */
export function budgetProblem(o: Partial<CompressionOptions>, name: (s: CompressionSetting) => string): string | null {
  if (!o.method || o.method === "none" || o.rate != null || o.maxCacheTokens != null) return null;
  return `${o.method} needs a budget: ${name(settingOf("rate"))} or ${name(settingOf("maxCacheTokens"))}`;
}

/** What a sequence's cache holds against what it would hold uncompressed. */
export interface KvStats {
  blocksUsed: number;
  blocksUncompressed: number;
  /** K/V entries kept, summed over every (layer, KV head) */
  tokensKept: number;
  /** positions of the sequence whose K/V it needs (what one head would keep uncompressed) */
  contextTokens: number;
  /** blocksUncompressed / blocksUsed (1 when nothing was evicted) */
  compressionRate: number;
  evictedTokens: number;
}
