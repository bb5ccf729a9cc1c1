// POST /v1/chat/completions: messages rendered by the model's chat template,
// answered as one message or streamed as deltas (the first carries the role).
import { Hono } from "hono";
import type { ServerContext } from "../src/serving/context.ts";
import type { ChatMessage } from "../src/serving/context.ts";
import { ApiError } from "./api-error.ts";
import { asApiErrors } from "./errors.ts";
import type { JsonBodyEnv } from "./middleware/json-body.ts";
import { parseBody } from "./validate.ts";
import { ChatRequestSchema, type ChatMessageInput } from "./schemas/requests.ts";
import { resolveModel, toGenerationParams } from "./generation-params.ts";
import { newId, streamChunks, usageOf } from "./respond.ts";
import { streamOptionsOf } from "./schemas/stream-options.ts";
import { noteRequest } from "./middleware/request-log.ts";

export function chatRoute(ctx: ServerContext) {
  return new Hono<JsonBodyEnv>().post("/chat/completions", async (c) => {
    const body = parseBody(ChatRequestSchema, c.get("body"));
    const model = resolveModel(ctx, body.model);
    const { stream, includeUsage } = streamOptionsOf(body);
    if (!ctx.hasChatTemplate) throw new ApiError(400, `${model} has no chat template; use /v1/completions`, "messages");
    const id = newId("chatcmpl");
    const gen = asApiErrors("messages", () => {
      const prompt = ctx.encodeChat(body.messages.map(toTemplateMessage));
      // chat answers may run to the end of the context, as in vLLM
      return ctx.generate(toGenerationParams(ctx, body, prompt, Infinity), c.req.raw.signal, id);
    });
    noteRequest(c, { generation: gen, responseId: id, model, stream, prompt: body.messages });
    const created = Math.floor(Date.now() / 1000);
    if (stream) {
      const choice = (text: string, finishReason: string | null) => ({ index: 0, delta: text ? { content: text } : {}, logprobs: null, finish_reason: finishReason });
      const opening = { index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null };
      return streamChunks(c, gen, { id, object: "chat.completion.chunk", created, model, choice, opening }, includeUsage);
    }
    const text = await gen.text();
    const r = await gen.finish();
    return c.json({
      id,
      object: "chat.completion",
      created,
      model,
      choices: [{ index: 0, message: { role: "assistant", content: text }, logprobs: null, finish_reason: r.finishReason }],
      usage: usageOf(r),
    });
  });
}

/** Text parts joined; "developer" is OpenAI's newer name for "system". */
function toTemplateMessage(m: ChatMessageInput): ChatMessage {
  const content = typeof m.content === "string" ? m.content : m.content.map((p) => p.text).join("");
  return { role: m.role === "developer" ? "system" : m.role, content };
}
