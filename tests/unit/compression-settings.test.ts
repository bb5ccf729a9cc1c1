// The compression settings table: every settable option is accepted, with the same
// range and the same value, by the generate/eval flags, by serve (flag and
// environment variable) and by a request's kv_compression, because all four are
// derived from one table.
import { expect, test } from "bun:test";
import { COMPRESSION_SETTINGS, DEFAULT_COMPRESSION, SETTABLE, type CompressionSetting } from "../../src/cache/compression.ts";
import { METHODS } from "../../src/cache/methods.ts";
import { parseKvFlags, KV_FLAGS_HELP } from "../../cli/kv-flags.ts";
import { resolveServeConfig, SERVE_SETTINGS } from "../../cli/serve-config.ts";
import { CompletionRequestSchema } from "../../routes/schemas/requests.ts";
import { requestCompression } from "../../routes/schemas/kv-compression.ts";
import { parseBody } from "../../routes/validate.ts";

/** Values inside a setting's range and just outside it, as JSON values. */
function samples(s: CompressionSetting): { good: unknown[]; bad: unknown[] } {
  const t = s.type;
  switch (t.kind) {
    case "int":
      return { good: [t.min, t.min + 7], bad: [t.min - 1, t.min + 0.5] };
    case "number":
      return t.below === undefined ? { good: [t.min, t.min + 2.5], bad: [t.min - 0.5] } : { good: [t.min, (t.min + t.below) / 2], bad: [t.min - 0.1, t.below] };
    case "bool":
      return { good: [true], bad: [] };
    case "enum":
      return { good: [...t.values], bad: ["nope"] };
  }
}

/** A method that evicts needs a budget on every surface; give one where the sample lacks it. */
function withBudget(s: CompressionSetting, value: unknown): Record<string, unknown> {
  if (s.key === "method") return value === "none" ? {} : { rate: 2 };
  return s.key === "rate" || s.key === "maxCacheTokens" ? {} : { rate: 2, method: "kvcompress" };
}

type Outcome = { ok: true; value: unknown } | { ok: false };

function viaCli(s: CompressionSetting, value: unknown): Outcome {
  const flags: Record<string, string | boolean> = { [s.flag!]: typeof value === "boolean" ? value : String(value) };
  const extra = withBudget(s, value);
  if (extra.rate) flags["kv-rate"] = String(extra.rate);
  if (extra.method) flags["kv-method"] = String(extra.method);
  try {
    return { ok: true, value: parseKvFlags(flags)[s.key] };
  } catch {
    return { ok: false };
  }
}

function viaServe(s: CompressionSetting, value: unknown, from: "flag" | "env"): Outcome {
  const extra = withBudget(s, value);
  const text: Record<string, string> = { [s.key]: String(value) };
  if (extra.rate) text.rate = String(extra.rate);
  if (extra.method) text.method = String(extra.method);
  const flags: Record<string, string | boolean> = {};
  const env: Record<string, string> = {};
  for (const [key, t] of Object.entries(text)) {
    const setting = SERVE_SETTINGS[key];
    if (from === "flag") flags[setting.flag] = setting.arg ? t : t === "true";
    else env[setting.env] = t;
  }
  try {
    return { ok: true, value: resolveServeConfig(flags, (n) => env[n], () => "(embedded)").compression[s.key] };
  } catch {
    return { ok: false };
  }
}

function viaRequest(s: CompressionSetting, value: unknown): Outcome {
  const kv = { [s.field!]: value, ...withBudget(s, value) };
  try {
    const body = parseBody(CompletionRequestSchema, { prompt: "x", kv_compression: kv });
    return { ok: true, value: requestCompression({}, body)[s.key] };
  } catch {
    return { ok: false };
  }
}

test("every settable option: the CLI, serve (flag and variable) and a request accept the same values and refuse the same", () => {
  expect(SETTABLE.length).toBeGreaterThan(10);
  for (const s of SETTABLE) {
    const { good, bad } = samples(s);
    for (const value of good) {
      const expected = { ok: true, value };
      expect({ setting: s.key, cli: viaCli(s, value) }).toEqual({ setting: s.key, cli: expected });
      expect({ setting: s.key, serveFlag: viaServe(s, value, "flag") }).toEqual({ setting: s.key, serveFlag: expected });
      expect({ setting: s.key, serveEnv: viaServe(s, value, "env") }).toEqual({ setting: s.key, serveEnv: expected });
      expect({ setting: s.key, request: viaRequest(s, value) }).toEqual({ setting: s.key, request: expected });
    }
    for (const value of bad) {
      const refused: Outcome = { ok: false };
      expect({ setting: s.key, value, cli: viaCli(s, value), serveFlag: viaServe(s, value, "flag"), serveEnv: viaServe(s, value, "env"), request: viaRequest(s, value) }).toEqual({
        setting: s.key,
        value,
        cli: refused,
        serveFlag: refused,
        serveEnv: refused,
        request: refused,
      });
    }
  }
});

test("the copies that used to disagree: a protected window of 0 and kvcompress's allocation work everywhere", () => {
  expect(parseKvFlags({ "kv-protected-window": "0", "kv-allocation": "layer" })).toEqual({ protectedWindow: 0, allocation: "layer" });
  expect(resolveServeConfig({}, (n) => ({ KVC_KV_PROTECTED_WINDOW: "0", KVC_KV_ALLOCATION: "global" })[n], () => "").compression).toEqual({ protectedWindow: 0, allocation: "global" });
  const body = parseBody(CompletionRequestSchema, { prompt: "x", protected_window_size: 0, kv_compression: { allocation: "pyramid" } });
  expect(requestCompression({}, body)).toEqual({ protectedWindow: 0, allocation: "pyramid" });
});

test("a budget without a method means kvcompress on every surface; a method without a budget is refused on every surface", () => {
  expect(parseKvFlags({ "kv-rate": "4" })).toEqual({ rate: 4, method: "kvcompress" });
  expect(resolveServeConfig({ "kv-max-tokens": "64" }, () => undefined, () => "").compression).toEqual({ maxCacheTokens: 64, method: "kvcompress" });
  expect(requestCompression({}, parseBody(CompletionRequestSchema, { prompt: "x", max_cache_tokens: 64 }))).toEqual({ maxCacheTokens: 64, method: "kvcompress" });
  // the server's own evicting method stays when a request only sets the budget
  expect(requestCompression({ method: "snapkv", rate: 2 }, parseBody(CompletionRequestSchema, { prompt: "x", kv_compression: { rate: 8 } }))).toEqual({ method: "snapkv", rate: 8 });
  expect(() => parseKvFlags({ "kv-method": "snapkv" })).toThrow("--kv-method snapkv needs a budget: --kv-rate or --kv-max-tokens");
  expect(() => resolveServeConfig({}, (n) => ({ KVC_KV_METHOD: "snapkv" })[n], () => "")).toThrow("KVC_KV_METHOD: snapkv needs a budget: --kv-rate or --kv-max-tokens (KVC_KV_RATE or KVC_KV_MAX_TOKENS)");
  expect(() => requestCompression({}, parseBody(CompletionRequestSchema, { prompt: "x", kv_compression: { method: "snapkv" } }))).toThrow("kv_compression.method snapkv needs a budget: kv_compression.rate or max_cache_tokens");
});

test("the defaults, the help and the method registry come from the table", () => {
  for (const s of COMPRESSION_SETTINGS) expect(DEFAULT_COMPRESSION[s.key]).toEqual(s.default);
  for (const s of SETTABLE) expect(KV_FLAGS_HELP).toContain(`--${s.flag}`);
  expect(KV_FLAGS_HELP).toContain("most recent positions never evicted (default 32)");
  const methods = (COMPRESSION_SETTINGS.find((s) => s.key === "method")!.type as { values: readonly string[] }).values;
  expect(Object.keys(METHODS).sort()).toEqual([...methods].sort());
});
