// POST /v1/completions: a text prompt (or token ids) continued, streamed or whole.
import { Hono } from "hono";
import type { ServerContext } from "../src/serving/context.ts";
import type { GenerationDelta } from "../src/serving/generation.ts";
import type { JsonBodyEnv } from "./middleware/json-body.ts";
import { parseBody } from "./validate.ts";
import { CompletionRequestSchema, type CompletionRequest } from "./schemas/requests.ts";
import { resolveModel, toGenerationParams } from "./generation-params.ts";
import { asApiErrors } from "./errors.ts";
import { ApiError } from "./api-error.ts";
import { completionLogprobs } from "./logprobs.ts";
import { newId, streamChunks, usageOf } from "./respond.ts";
import { streamOptionsOf } from "./schemas/stream-options.ts";
import { noteRequest } from "./middleware/request-log.ts";

/** OpenAI's and vLLM's default for completions */
const DEFAULT_MAX_TOKENS = 16;

export function completionsRoute(ctx: ServerContext) {
  return new Hono<JsonBodyEnv>().post("/completions", async (c) => {
    const body = parseBody(CompletionRequestSchema, c.get("body"));
    const model = resolveModel(ctx, body.model);
    const { stream, includeUsage } = streamOptionsOf(body);
    if (body.kv_compression?.cache_prefix) throw new ApiError(400, "kv_compression.cache_prefix needs chat messages (/v1/chat/completions): the reusable prefix ends where the final user turn starts", "kv_compression.cache_prefix");
    const logprobs = body.logprobs ?? undefined;
    const n = body.n ?? 1;
    // a completion prompt does not say where its question starts: no reusable compressed prefix
    const id = newId("cmpl");
    const gens = asApiErrors("prompt", () => ctx.generateChoices({ ...toGenerationParams(ctx, body, promptIds(ctx, body), DEFAULT_MAX_TOKENS), logprobs, prefixEnd: 0 }, n, c.req.raw.signal, undefined, id));
    noteRequest(c, { generation: gens[0], responseId: id, model, stream, prompt: body.prompt });
    const created = Math.floor(Date.now() / 1000);
    // text_offset runs on within each choice
    const lps = gens.map(() => (logprobs == null ? null : completionLogprobs(logprobs)));
    const choice = (d: GenerationDelta, finishReason: string | null, index: number) =>
      !d.text && !d.logprobs.length && !finishReason ? null : { index, text: d.text, logprobs: lps[index] ? lps[index](d.logprobs) : null, finish_reason: finishReason };
    if (stream) return streamChunks(c, gens, { id, object: "text_completion", created, model, choice }, includeUsage);
    const texts = await Promise.all(gens.map((g) => g.text()));
    const rs = await Promise.all(gens.map((g) => g.finish()));
    const choices = rs.map((r, i) => choice({ text: texts[i], logprobs: gens[i].logprobs }, r.finishReason, i));
    return c.json({ id, object: "text_completion", created, model, choices, usage: usageOf(rs) });
  });
}

/** A string is tokenized (BOS added as the model expects); token ids are used as given. */
function promptIds(ctx: ServerContext, body: CompletionRequest): number[] {
  const p = Array.isArray(body.prompt) && body.prompt.length === 1 && typeof body.prompt[0] !== "number" ? body.prompt[0] : body.prompt;
  return typeof p === "string" ? ctx.encode(p) : (p as number[]);
}
