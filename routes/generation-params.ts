// From a validated OpenAI body and its prompt ids to what the engine runs:
// the model check, context and cache limits (400s naming both numbers),
// max_tokens defaults, sampling defaults, stop strings and compression.
import type { GenerationParams } from "../src/serving/generation.ts";
import type { ServerContext } from "../src/serving/context.ts";
import { ApiError } from "../src/serving/api-error.ts";
import { requestCompression } from "./schemas/kv-compression.ts";
import { maxCompletionTokens, usableContext } from "../src/serving/kv-limit.ts";
import type { CommonRequest } from "./schemas/requests.ts";

/** The served model's id; a missing `model` means it, any other name is a 404. */
export function resolveModel(ctx: ServerContext, model: string | null | undefined): string {
  if (model == null || model === ctx.opts.modelId) return ctx.opts.modelId;
  throw new ApiError(404, `The model \`${model}\` does not exist. This server serves "${ctx.opts.modelId}".`, "model", "model_not_found");
}

/** Refuses prompt text that cannot fit the context before the tokenizer spends time on it. */
export function checkPromptText(ctx: ServerContext, chars: number, param: "prompt" | "messages") {
  const max = ctx.opts.maxPromptChars;
  if (chars > max) {
    throw new ApiError(400, `the prompt has ${chars} characters, more than this model's maximum context length of ${ctx.engine.cfg.maxContext} tokens can hold (at most ${max} characters)`, param, "context_length_exceeded");
  }
}

export interface PromptLimits {
  /** the body field the prompt came from, for error params */
  param: "prompt" | "messages";
  /** max_tokens when the request gives none; clamped to the context left */
  defaultMaxTokens: number;
}

export function toGenerationParams(ctx: ServerContext, body: CommonRequest, prompt: number[], limits: PromptLimits): GenerationParams {
  const { cfg, cache } = ctx.engine;
  const n = prompt.length;
  if (n === 0) throw new ApiError(400, `${limits.param} is empty after tokenization`, limits.param);
  if (n >= cfg.maxContext) {
    throw new ApiError(400, `the prompt has ${n} tokens, but this model's maximum context length is ${cfg.maxContext} tokens`, limits.param, "context_length_exceeded");
  }
  const bad = prompt.findIndex((t) => t >= cfg.vocab);
  if (bad >= 0) throw new ApiError(400, `token id ${prompt[bad]} is outside the vocabulary (0..${cfg.vocab - 1})`, `${limits.param}[${bad}]`);
  const blocks = cache.heads * Math.ceil(n / cache.blockSize);
  if (blocks > cache.pool.numBlocks) {
    throw new ApiError(400, `the prompt needs ${blocks} KV cache blocks, but the server's cache holds ${cache.pool.numBlocks}; restart it with a larger --kv-memory`, limits.param, "context_length_exceeded");
  }

  const compression = requestCompression(ctx.opts.compression, body);
  const completionMax = "max_completion_tokens" in body ? body.max_completion_tokens : null;
  const asked = completionMax ?? body.max_tokens;
  const maxTokensParam = completionMax != null ? "max_completion_tokens" : "max_tokens";
  if (asked != null && n + asked > cfg.maxContext) {
    throw new ApiError(
      400,
      `this model's maximum context length is ${cfg.maxContext} tokens; the request asks for ${n + asked} (${n} in the prompt, ${asked} for the completion)`,
      maxTokensParam,
      "context_length_exceeded",
    );
  }
  // the cache, not only the context, bounds a sequence: refuse what would be cut short
  const fit = maxCompletionTokens(ctx.engine, n, compression);
  const maxTokens = asked ?? Math.min(limits.defaultMaxTokens, fit);
  if (maxTokens > fit || maxTokens < 1) {
    const room = fit === 0 ? "no completion token fits after this prompt" : `at most ${fit} completion tokens fit after this ${n}-token prompt`;
    const how = compression.method && compression.method !== "none" ? "with this kv_compression" : `uncompressed (at most ${usableContext(ctx.engine)} tokens a sequence)`;
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
