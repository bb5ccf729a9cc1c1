// POST /v1/completions: a text prompt (or token ids) continued, streamed or whole.
import { Hono } from "hono";
import type { ServerContext } from "../src/serving/context.ts";
import type { GenerationDelta } from "../src/serving/generation.ts";
import type { JsonBodyEnv } from "./middleware/json-body.ts";
import { parseBody } from "./validate.ts";
import { CompletionRequestSchema, type CompletionRequest } from "./schemas/requests.ts";
import { resolveModel, toGenerationParams } from "./generation-params.ts";
import { asApiErrors } from "./errors.ts";
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
    const logprobs = body.logprobs ?? undefined;
    const id = newId("cmpl");
    const gen = asApiErrors("prompt", () => ctx.generate({ ...toGenerationParams(ctx, body, promptIds(ctx, body), DEFAULT_MAX_TOKENS), logprobs }, c.req.raw.signal, id));
    noteRequest(c, { generation: gen, responseId: id, model, stream, prompt: body.prompt });
    const created = Math.floor(Date.now() / 1000);
    const lp = logprobs == null ? null : completionLogprobs(logprobs);
    const choice = (d: GenerationDelta, finishReason: string | null) =>
      !d.text && !d.logprobs.length && !finishReason ? null : { index: 0, text: d.text, logprobs: lp ? lp(d.logprobs) : null, finish_reason: finishReason };
    if (stream) return streamChunks(c, gen, { id, object: "text_completion", created, model, choice }, includeUsage);
    const text = await gen.text();
    const r = await gen.finish();
    return c.json({ id, object: "text_completion", created, model, choices: [choice({ text, logprobs: gen.logprobs }, r.finishReason)], usage: usageOf(r) });
  });
}

/** A string is tokenized (BOS added as the model expects); token ids are used as given. */
function promptIds(ctx: ServerContext, body: CompletionRequest): number[] {
  const p = Array.isArray(body.prompt) && body.prompt.length === 1 && typeof body.prompt[0] !== "number" ? body.prompt[0] : body.prompt;
  return typeof p === "string" ? ctx.encode(p) : (p as number[]);
}
