// Per-request KV compression: the `kv_compression` object, the top-level fields of
// the KV-Compress vLLM fork (max_cache_tokens, protected_window_size,
// compress_once), and how they merge over the server's defaults into the
// engine's CompressionOptions. Fields, types and ranges come from the settings
// table (src/cache/compression.ts), which the CLI and serve read too.
import * as v from "valibot";
import { budgetProblem, withImpliedMethod, SETTABLE, settingOf, settingSchema, type CompressionOptions } from "../../src/cache/compression.ts";
import { ApiError } from "../api-error.ts";
import { strictObjectSchema } from "./object-schema.ts";

const fieldSchema = (key: keyof CompressionOptions) => v.nullish(settingSchema(settingOf(key)));

/** Strict: a misspelt key is an error, not a silently uncompressed request. */
export const KvCompressionSchema = strictObjectSchema(Object.fromEntries(SETTABLE.map((s) => [s.field!, v.nullish(settingSchema(s))])));
export type KvCompressionInput = Record<string, unknown>;

/** The KV-Compress fork's top-level request fields (spread into a request schema). */
export const KvCompressFields = {
  kv_compression: v.nullish(KvCompressionSchema),
  max_cache_tokens: fieldSchema("maxCacheTokens"),
  protected_window_size: fieldSchema("protectedWindow"),
  compress_once: fieldSchema("compressOnce"),
};

type KvCompressFieldsInput = { kv_compression?: KvCompressionInput | null; max_cache_tokens?: unknown; protected_window_size?: unknown; compress_once?: unknown };

/** snake_case request fields to the engine's options; absent fields stay absent. */
export function toCompressionOptions(k: KvCompressionInput | null | undefined): Partial<CompressionOptions> {
  if (!k) return {};
  return Object.fromEntries(SETTABLE.filter((s) => k[s.field!] != null).map((s) => [s.key, k[s.field!]]));
}

/**
 * The compression a request runs with: server defaults, then the fork's top-level
 * fields, then `kv_compression`. A budget with no method in the request means
 * KV-Compress (withImpliedMethod).
 */
export function requestCompression(defaults: Partial<CompressionOptions>, body: KvCompressFieldsInput): Partial<CompressionOptions> {
  const asked = {
    ...toCompressionOptions({ max_cache_tokens: body.max_cache_tokens, protected_window: body.protected_window_size, compress_once: body.compress_once }),
    ...toCompressionOptions(body.kv_compression),
  };
  const merged = withImpliedMethod(asked, defaults);
  const problem = budgetProblem(merged, (s) => (s.key === "maxCacheTokens" ? "max_cache_tokens" : `kv_compression.${s.field}`));
  if (problem) throw new ApiError(400, `kv_compression.method ${problem}`, "kv_compression.rate");
  return merged;
}
