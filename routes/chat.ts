// POST /v1/chat/completions: messages (and tools) rendered by the model's chat template,
// answered as one message or streamed as deltas (the first carries the role). With
// response_format or tools the answer is decoded under a grammar
// (routes/structured-output.ts); tool calls come back as message.tool_calls or
// delta.tool_calls, with finish_reason "tool_calls".
import { Hono } from "hono";
import type { ServerContext } from "../src/serving/context.ts";
import type { ChatMessage } from "../src/serving/context.ts";
import type { GenerationDelta } from "../src/serving/generation.ts";
import { GrammarError, type GrammarConstraint } from "../src/serving/grammar.ts";
import { ApiError } from "./api-error.ts";
import { asApiErrors } from "./errors.ts";
import type { JsonBodyEnv } from "./middleware/json-body.ts";
import { parseBody } from "./validate.ts";
import { ChatRequestSchema, type ChatMessageInput } from "./schemas/requests.ts";
import { resolveModel, toGenerationParams } from "./generation-params.ts";
import { chatLogprobs } from "./logprobs.ts";
import { newId, streamChunks, usageOf } from "./respond.ts";
import { streamOptionsOf } from "./schemas/stream-options.ts";
import { noteRequest } from "./middleware/request-log.ts";
import { answerGrammar, callableTools, splitToolCalls, ToolCallSplitter } from "./structured-output.ts";

export function chatRoute(ctx: ServerContext) {
  return new Hono<JsonBodyEnv>().post("/chat/completions", async (c) => {
    const body = parseBody(ChatRequestSchema, c.get("body"));
    const model = resolveModel(ctx, body.model);
    const { stream, includeUsage } = streamOptionsOf(body);
    if (!ctx.hasChatTemplate) throw new ApiError(400, `${model} has no chat template; use /v1/completions`, "messages");
    // as vLLM: top_logprobs 0 goes without logprobs, more needs it (OpenAI refuses any)
    if (body.top_logprobs && !body.logprobs) throw new ApiError(400, "top_logprobs needs logprobs: true", "top_logprobs");
    const top = body.logprobs ? (body.top_logprobs ?? 0) : null;
    const tools = callableTools(body);
    const grammar = await answerGrammar(body, tools);
    const n = body.n ?? 1;
    const messages = body.messages.map(toTemplateMessage);
    const prompt = asApiErrors("messages", () => ctx.encodeChat(messages, body.tools ?? undefined));
    // each choice decodes under a matcher of its own
    const constraints = grammar ? await Promise.all(Array.from({ length: n }, () => constrained(ctx, grammar.spec, grammar.param))) : undefined;
    const id = newId("chatcmpl");
    let gens;
    try {
      gens = asApiErrors("messages", () => {
        // chat answers may run to the end of the context, as in vLLM
        const params = { ...toGenerationParams(ctx, body, prompt, Infinity), logprobs: top ?? undefined };
        // kv_compression.cache_prefix: what comes before the final user turn is the reusable prefix
        if (params.compression.cachePrefix) params.prefixEnd = ctx.chatPrefixEnd(messages, prompt, body.tools ?? undefined);
        return ctx.generateChoices(params, n, c.req.raw.signal, constraints, id);
      });
    } catch (e) {
      for (const k of constraints ?? []) k.dispose();
      throw e;
    }
    noteRequest(c, { generation: gens[0], responseId: id, model, stream, prompt: body.messages });
    const created = Math.floor(Date.now() / 1000);
    const logprobsOf = (d: GenerationDelta) => (top == null ? null : chatLogprobs(d.logprobs, top));
    if (stream) {
      // each choice splits its own tool calls
      const splitters = gens.map(() => (tools ? new ToolCallSplitter() : null));
      const choice = (d: GenerationDelta, finishReason: string | null, index: number) => {
        const splitter = splitters[index];
        let content = d.text;
        let calls: object[] = [];
        if (splitter) {
          const s = splitter.push(d.text);
          content = s.content + (finishReason ? splitter.flush() : "");
          calls = s.calls.map((call, i) => ({ index: splitter.calls.length - s.calls.length + i, ...call }));
        }
        if (!content && !calls.length && !d.logprobs.length && !finishReason) return null;
        const delta = { ...(content ? { content } : {}), ...(calls.length ? { tool_calls: calls } : {}) };
        const finish = finishReason === "stop" && splitter?.calls.length ? "tool_calls" : finishReason;
        return { index, delta, logprobs: logprobsOf(d), finish_reason: finish };
      };
      const opening = { index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null };
      return streamChunks(c, gens, { id, object: "chat.completion.chunk", created, model, choice, opening }, includeUsage);
    }
    const texts = await Promise.all(gens.map((g) => g.text()));
    const rs = await Promise.all(gens.map((g) => g.finish()));
    const choices = rs.map((r, i) => {
      const { content, calls } = tools ? splitToolCalls(texts[i]) : { content: texts[i], calls: [] };
      const message = { role: "assistant", content, ...(calls.length ? { tool_calls: calls } : {}) };
      const finish = r.finishReason === "stop" && calls.length ? "tool_calls" : r.finishReason;
      return { index: i, message, logprobs: logprobsOf({ text: texts[i], logprobs: gens[i].logprobs }), finish_reason: finish };
    });
    return c.json({
      id,
      object: "chat.completion",
      created,
      model,
      choices,
      usage: usageOf(rs),
    });
  });
}

/** A matcher for the answer's grammar; a grammar xgrammar refuses is a 400 about `param`. */
async function constrained(ctx: ServerContext, spec: Parameters<ServerContext["constrain"]>[0], param: string): Promise<GrammarConstraint> {
  try {
    return await ctx.constrain(spec);
  } catch (e) {
    if (e instanceof GrammarError) throw new ApiError(400, `${param}: ${e.message}`, param);
    throw e;
  }
}

/**
 * Text parts joined; "developer" is OpenAI's newer name for "system". Tool calls reach
 * the template with their arguments parsed, as transformers' templates expect them.
 */
function toTemplateMessage(m: ChatMessageInput): ChatMessage {
  const content = m.content == null ? "" : typeof m.content === "string" ? m.content : m.content.map((p) => p.text).join("");
  const out: ChatMessage = { role: m.role === "developer" ? "system" : m.role, content };
  if (m.tool_calls?.length) out.tool_calls = m.tool_calls.map((t) => ({ ...t, function: { name: t.function.name, arguments: parseArguments(t.function.arguments) } }));
  if (m.tool_call_id != null) out.tool_call_id = m.tool_call_id;
  return out;
}

function parseArguments(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return s;
  }
}
