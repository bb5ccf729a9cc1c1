// Every failure the HTTP layer answers, as an ApiError (OpenAI's error shape): the
// engine's PromptError and serving's ServingError are worded here, once, in the
// request's terms (which field, which flag to change).
import { HTTPException } from "hono/http-exception";
import { PromptError, ServingError } from "../src/serving/errors.ts";
import { ApiError } from "./api-error.ts";

/** The body field a prompt came from. */
export type PromptParam = "prompt" | "messages";

/** `e` as the client sees it; anything unforeseen is a 500 naming its message. */
export function toApiError(e: unknown, param: PromptParam = "prompt"): ApiError {
  if (e instanceof ApiError) return e;
  if (e instanceof HTTPException) return new ApiError(e.status, e.message || "bad request");
  if (e instanceof PromptError) {
    const p = e.problem;
    switch (p.kind) {
      case "empty":
        return new ApiError(400, `${param} is empty after tokenization`, param);
      case "too_long":
        return new ApiError(400, `the prompt has ${p.tokens} tokens, but this model's maximum context length is ${p.maxContext} tokens`, param, "context_length_exceeded");
      case "bad_token":
        return new ApiError(400, e.message, `${param}[${p.index}]`);
      case "cache_too_small":
        return new ApiError(400, `the prompt needs ${p.blocks} KV cache blocks, but the server's cache holds ${p.numBlocks}; restart it with a larger --kv-memory`, param, "context_length_exceeded");
    }
  }
  if (e instanceof ServingError) {
    const p = e.problem;
    switch (p.kind) {
      case "busy":
        return new ApiError(429, e.message, null, "queue_full", undefined, { "Retry-After": String(p.retryAfterS) });
      case "shutting_down":
        return new ApiError(503, e.message, null, "server_shutting_down");
      case "shut_down":
        return new ApiError(503, e.message, null, "server_shutdown");
      case "engine_failed":
        return new ApiError(500, e.message);
      case "text_too_long":
        return new ApiError(400, e.message, param, "context_length_exceeded");
    }
  }
  return new ApiError(500, `internal server error: ${(e as Error).message}`);
}

/** Runs `fn`, answering its failures as ApiErrors about `param`. */
export function asApiErrors<T>(param: PromptParam, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw toApiError(e, param);
  }
}

/** Whether `e` is one we foresaw (the rest are logged as internal errors). */
export const isForeseen = (e: unknown) => e instanceof ApiError || e instanceof HTTPException || e instanceof PromptError || e instanceof ServingError;
