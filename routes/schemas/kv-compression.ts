// Per-request KV compression: the `kv_compression` object, the top-level fields of
// the KV-Compress vLLM fork (max_cache_tokens, protected_window_size,
// compress_once), and how they merge over the server's defaults into the
// engine's CompressionOptions.
import * as v from "valibot";
import type { CompressionOptions } from "../../src/cache/compression.ts";
import { ApiError } from "../../src/serving/api-error.ts";
import { strictObjectSchema } from "./object-schema.ts";

const PositiveInt = v.pipe(v.number(), v.safeInteger(), v.minValue(1));

/** Strict: a misspelt key is an error, not a silently uncompressed request. */
export const KvCompressionSchema = strictObjectSchema({
  method: v.nullish(v.picklist(["none", "kvcompress", "snapkv", "streaming", "kvcrush"])),
  rate: v.nullish(v.pipe(v.number(), v.finite(), v.minValue(1))),
  max_cache_tokens: v.nullish(PositiveInt),
  protected_window: v.nullish(PositiveInt),
  observation_window: v.nullish(PositiveInt),
  interval: v.nullish(PositiveInt),
  compress_once: v.nullish(v.boolean()),
  crush_ratio: v.nullish(v.pipe(v.number(), v.minValue(0), v.ltValue(1))),
  crush_anchor: v.nullish(v.picklist(["mean", "alternate", "random"])),
  crush_base: v.nullish(v.picklist(["kvcompress", "snapkv"])),
});
export type KvCompressionInput = v.InferOutput<typeof KvCompressionSchema>;

/** The KV-Compress fork's top-level request fields (spread into a request schema). */
export const KvCompressFields = {
  kv_compression: v.nullish(KvCompressionSchema),
  max_cache_tokens: v.nullish(PositiveInt),
  protected_window_size: v.nullish(PositiveInt),
  compress_once: v.nullish(v.boolean()),
};

type KvCompressFieldsInput = { [K in keyof typeof KvCompressFields]?: v.InferOutput<(typeof KvCompressFields)[K]> };

/** snake_case request fields to the engine's options; absent fields stay absent. */
export function toCompressionOptions(k: KvCompressionInput | null | undefined): Partial<CompressionOptions> {
  if (!k) return {};
  return dropNullish({
    method: k.method,
    rate: k.rate,
    maxCacheTokens: k.max_cache_tokens,
    protectedWindow: k.protected_window,
    observationWindow: k.observation_window,
    interval: k.interval,
    compressOnce: k.compress_once,
    crushRatio: k.crush_ratio,
    crushAnchor: k.crush_anchor,
    crushBase: k.crush_base,
  });
}

/**
 * The compression a request runs with: server defaults, then the fork's top-level
 * fields, then `kv_compression`. A budget with no method anywhere means KV-Compress,
 * as on the fork, where a budget is all a request sends.
 */
export function requestCompression(defaults: Partial<CompressionOptions>, body: KvCompressFieldsInput): Partial<CompressionOptions> {
  const asked = {
    ...dropNullish({ maxCacheTokens: body.max_cache_tokens, protectedWindow: body.protected_window_size, compressOnce: body.compress_once }),
    ...toCompressionOptions(body.kv_compression),
  };
  const merged: Partial<CompressionOptions> = { ...defaults, ...asked };
  const method = merged.method ?? "none";
  if (!asked.method && method === "none" && (asked.rate != null || asked.maxCacheTokens != null)) merged.method = "kvcompress";
  if (merged.method && merged.method !== "none" && merged.rate == null && merged.maxCacheTokens == null) {
    throw new ApiError(400, `kv_compression.method "${merged.method}" needs a budget: set kv_compression.rate or max_cache_tokens`, "kv_compression.rate");
  }
  return merged;
}

function dropNullish<T extends object>(o: T): { [K in keyof T]?: Exclude<T[K], null | undefined> } {
  return Object.fromEntries(Object.entries(o).filter(([, x]) => x != null)) as { [K in keyof T]?: Exclude<T[K], null | undefined> };
}
