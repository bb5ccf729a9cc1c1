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

/** A request's usage: its prompt once, the completion tokens and cache figures of all its choices. */
export function usageOf(results: GenerationResult | GenerationResult[]) {
  const rs = Array.isArray(results) ? results : [results];
  const sum = (f: (r: GenerationResult) => number) => rs.reduce((a, r) => a + f(r), 0);
  const completion = sum((r) => r.completionTokens);
  const used = sum((r) => r.kv.blocksUsed), uncompressed = sum((r) => r.kv.blocksUncompressed);
  return {
    prompt_tokens: rs[0].promptTokens,
    completion_tokens: completion,
    total_tokens: rs[0].promptTokens + completion,
    prompt_tokens_details: { cached_tokens: rs[0].cachedTokens },
    kv_cache: {
      blocks_used: used,
      blocks_uncompressed: uncompressed,
      compression_rate: rs.length === 1 ? rs[0].kv.compressionRate : used ? uncompressed / used : 1,
      evicted_tokens: sum((r) => r.kv.evictedTokens),
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
  /** choice `index`'s part of a chunk: a delta, or (empty) the finish reason at the end; null: send no chunk */
  choice(delta: GenerationDelta, finishReason: string | null, index: number): object | null;
  /** a choice sent before any text (chat: the assistant role) */
  opening?: object;
}

/**
 * Streams the generations of a request's choices as OpenAI chunks, each chunk one
 * choice's (its `index`), interleaved as their tokens come. A client that goes away
 * aborts them (their sequences are cancelled); an engine failure after the headers
 * went out becomes an `{"error": ...}` event before [DONE], as vLLM sends it.
 */
export function streamChunks(c: Context, gens: Generation[], shape: ChunkShape, includeUsage: boolean): Response {
  return streamSSE(c, async (stream) => {
    stream.onAbort(() => gens.forEach((g) => g.abort()));
    const head = { id: shape.id, object: shape.object, created: shape.created, model: shape.model };
    const tail = includeUsage ? { usage: null } : {};
    // one writer at a time: the choices' chunks queue behind each other, [DONE] last
    let written = Promise.resolve();
    const write = (data: string) => (written = written.then(() => stream.writeSSE({ data })));
    const send = (data: object) => write(JSON.stringify(data));
    const choiceStream = async (gen: Generation, index: number) => {
      if (shape.opening) await send({ ...head, choices: [{ ...shape.opening, index }], ...tail });
      for await (const delta of gen) {
        const choice = shape.choice(delta, null, index);
        if (choice) await send({ ...head, choices: [choice], ...tail });
      }
      const r = await gen.finish();
      if (r.finishReason !== "abort") await send({ ...head, choices: [shape.choice({ text: "", logprobs: [] }, r.finishReason, index)], ...tail });
      return r;
    };
    try {
      const rs = await Promise.all(gens.map(choiceStream));
      if (rs.some((r) => r.finishReason === "abort")) return; // nobody is listening
      if (includeUsage) await send({ ...head, choices: [], usage: usageOf(rs) });
    } catch (e) {
      gens.forEach((g) => g.abort());
      await send(toApiError(e).toJSON());
    }
    await write("[DONE]");
  });
}
