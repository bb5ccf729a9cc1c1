// OpenAI response plumbing shared by completions and chat: ids, usage, and the
// SSE stream (`data: {chunk}` events, `data: [DONE]` at the end, the usage chunk
// with `choices: []` when stream_options.include_usage asks for it).
import type { Context } from "hono";
import { streamSSE } from "hono/streaming";
import type { Generation, GenerationDelta, GenerationResult } from "../src/serving/generation.ts";
import { toApiError } from "./errors.ts";

export function newId(prefix: "cmpl" | "chatcmpl"): string {
  return `${prefix}-${crypto.randomUUID().replace(/-/g, "")}`;
}

export function usageOf(r: GenerationResult) {
  return {
    prompt_tokens: r.promptTokens,
    completion_tokens: r.completionTokens,
    total_tokens: r.promptTokens + r.completionTokens,
    kv_cache: {
      blocks_used: r.kv.blocksUsed,
      blocks_uncompressed: r.kv.blocksUncompressed,
      compression_rate: r.kv.compressionRate,
      evicted_tokens: r.kv.evictedTokens,
    },
  };
}

/** How one endpoint words its stream chunks. */
export interface ChunkShape {
  id: string;
  /** "text_completion" or "chat.completion.chunk" */
  object: string;
  created: number;
  model: string;
  /** the choice of a chunk: a delta, or (empty) the finish reason at the end; null: send no chunk */
  choice(delta: GenerationDelta, finishReason: string | null): object | null;
  /** a choice sent before any text (chat: the assistant role) */
  opening?: object;
}

/**
 * Streams a generation as OpenAI chunks. A client that goes away aborts the
 * generation (its sequence is cancelled); an engine failure after the headers
 * went out becomes an `{"error": ...}` event before [DONE], as vLLM sends it.
 */
export function streamChunks(c: Context, gen: Generation, shape: ChunkShape, includeUsage: boolean): Response {
  return streamSSE(c, async (stream) => {
    stream.onAbort(() => gen.abort());
    const head = { id: shape.id, object: shape.object, created: shape.created, model: shape.model };
    const tail = includeUsage ? { usage: null } : {};
    const send = (data: object) => stream.writeSSE({ data: JSON.stringify(data) });
    try {
      if (shape.opening) await send({ ...head, choices: [shape.opening], ...tail });
      for await (const delta of gen) {
        const choice = shape.choice(delta, null);
        if (choice) await send({ ...head, choices: [choice], ...tail });
      }
      const r = await gen.finish();
      if (r.finishReason === "abort") return; // nobody is listening
      await send({ ...head, choices: [shape.choice({ text: "", logprobs: [] }, r.finishReason)], ...tail });
      if (includeUsage) await send({ ...head, choices: [], usage: usageOf(r) });
    } catch (e) {
      await send(toApiError(e).toJSON());
    }
    await stream.writeSSE({ data: "[DONE]" });
  });
}
