// From a validated OpenAI body and its prompt ids to what the engine runs: the
// model check, the prompt (checked by the engine's one check, src/engine/prompt-check.ts,
// before anything is sized from it), max_tokens (its default, its fit beside the
// prompt in the context and in the KV cache), sampling defaults, stop strings and
// compression.
import type { GenerationParams } from "../src/serving/generation.ts";
import type { ServerContext } from "../src/serving/context.ts";
import { maxCompletionTokens, usableContext } from "../src/serving/kv-limit.ts";
import { ApiError } from "./api-error.ts";
import { requestCompression } from "./schemas/kv-compression.ts";
import type { CommonRequest } from "./schemas/requests.ts";

/** The served model's id; a missing `model` means it, any other name is a 404. */
export function resolveModel(ctx: ServerContext, model: string | null | undefined): string {
  if (model == null || model === ctx.opts.modelId) return ctx.opts.modelId;
  throw new ApiError(404, `The model \`${model}\` does not exist. This server serves "${ctx.opts.modelId}".`, "model", "model_not_found");
}

/** `defaultMaxTokens`: max_tokens when the request gives none, clamped to what fits. */
export function toGenerationParams(ctx: ServerContext, body: CommonRequest, prompt: number[], defaultMaxTokens: number): GenerationParams {
  ctx.checkPrompt(prompt);
  const { maxContext, maxSeqs } = ctx.limits;
  if ((body.n ?? 1) > maxSeqs) throw new ApiError(400, `n may be at most ${maxSeqs} on this server: each choice is a sequence, and it runs at most ${maxSeqs} at once`, "n");
  const n = prompt.length;
  const compression = requestCompression(ctx.opts.compression, body);
  const completionMax = "max_completion_tokens" in body ? body.max_completion_tokens : null;
  const asked = completionMax ?? body.max_tokens;
  const maxTokensParam = completionMax != null ? "max_completion_tokens" : "max_tokens";
  if (asked != null && n + asked > maxContext) {
    throw new ApiError(
      400,
      `this model's maximum context length is ${maxContext} tokens; the request asks for ${n + asked} (${n} in the prompt, ${asked} for the completion)`,
      maxTokensParam,
      "context_length_exceeded",
    );
  }
  // the cache, not only the context, bounds a sequence: refuse what would be cut short
  const fit = maxCompletionTokens(ctx.limits, n, compression);
  const maxTokens = asked ?? Math.min(defaultMaxTokens, fit);
  if (maxTokens > fit || maxTokens < 1) {
    const room = fit === 0 ? "no completion token fits after this prompt" : `at most ${fit} completion tokens fit after this ${n}-token prompt`;
    const how = compression.method && compression.method !== "none" ? "with this kv_compression" : `uncompressed (at most ${usableContext(ctx.limits)} tokens a sequence)`;
    throw new ApiError(400, `the server's KV cache (--kv-memory) cannot hold this request: ${room} ${how}; the request asks for ${maxTokens}. Lower ${maxTokensParam}, or compress the cache (kv_compression)`, maxTokensParam, "context_length_exceeded");
  }
  return {
    prompt,
    maxTokens,
    sampling: {
      temperature: body.temperature ?? 1,
      topP: body.top_p ?? 1,
      topK: Math.max(0, body.top_k ?? 0),
      seed: toU32(body.seed ?? Math.floor(Math.random() * 2 ** 32)),
    },
    stop: body.stop == null ? [] : typeof body.stop === "string" ? [body.stop] : body.stop,
    ignoreEos: body.ignore_eos ?? false,
    compression,
    // a seed asks for the same answer whatever runs beside it
    batchInvariant: body.seed != null,
  };
}

/** OpenAI seeds are any 64-bit integer; the sampler takes a u32. */
function toU32(seed: number): number {
  return ((seed % 2 ** 32) + 2 ** 32) % 2 ** 32;
}
