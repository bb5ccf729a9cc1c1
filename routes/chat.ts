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
    const gens = asApiErrors("messages", () => {
      const messages = body.messages.map(toTemplateMessage);
      const prompt = ctx.encodeChat(messages);
      // chat answers may run to the end of the context, as in vLLM
      const params = toGenerationParams(ctx, body, prompt, Infinity);
      // kv_compression.cache_prefix: what comes before the final user turn is the reusable prefix
      if (params.compression.cachePrefix) params.prefixEnd = ctx.chatPrefixEnd(messages, prompt);
      return ctx.generateChoices(params, body.n ?? 1, c.req.raw.signal);
    });
    const id = newId("chatcmpl");
    noteRequest(c, { generation: gens[0], responseId: id, model, stream, prompt: body.messages });
    const created = Math.floor(Date.now() / 1000);
    if (stream) {
      const choice = (text: string, finishReason: string | null, index: number) => ({ index, delta: text ? { content: text } : {}, logprobs: null, finish_reason: finishReason });
      const opening = { index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null };
      return streamChunks(c, gens, { id, object: "chat.completion.chunk", created, model, choice, opening }, includeUsage);
    }
    const texts = await Promise.all(gens.map((g) => g.text()));
    const rs = await Promise.all(gens.map((g) => g.finish()));
    return c.json({
      id,
      object: "chat.completion",
      created,
      model,
      choices: rs.map((r, i) => ({ index: i, message: { role: "assistant", content: texts[i] }, logprobs: null, finish_reason: r.finishReason })),
      usage: usageOf(rs),
    });
  });
}

/** Text parts joined; "developer" is OpenAI's newer name for "system". */
function toTemplateMessage(m: ChatMessageInput): ChatMessage {
  const content = typeof m.content === "string" ? m.content : m.content.map((p) => p.text).join("");
  return { role: m.role === "developer" ? "system" : m.role, content };
}
