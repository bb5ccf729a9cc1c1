// A prompt is checked once, here, when the engine takes a sequence: not empty,
// shorter than the context, every id in the vocabulary, and its blocks within the
// pool. The problem comes back typed, so the HTTP layer words it in OpenAI's terms
// (routes/errors.ts) and the CLI prints the message.
import type { KvCache } from "../cache/kv-cache.ts";

export type PromptProblem =
  | { kind: "empty" }
  | { kind: "too_long"; tokens: number; maxContext: number }
  | { kind: "bad_token"; index: number; id: number; vocab: number }
  | { kind: "cache_too_small"; blocks: number; numBlocks: number };

export class PromptError extends Error {
  constructor(readonly problem: PromptProblem) {
    super(describe(problem));
  }
}

function describe(p: PromptProblem): string {
  switch (p.kind) {
    case "empty":
      return "prompt must hold at least one token";
    case "too_long":
      return `prompt has ${p.tokens} tokens; the model's context is ${p.maxContext}`;
    case "bad_token":
      return `token id ${p.id} is outside the vocabulary (0..${p.vocab - 1})`;
    case "cache_too_small":
      return `the prompt needs ${p.blocks} KV cache blocks, but the cache holds ${p.numBlocks}; raise --kv-memory`;
  }
}

/**
 * Throws a PromptError for the first problem of `prompt`. `uncompressed`: the prompt
 * tokens prefilled before the first compression can shrink them (all of them unless
 * query-agnostic evaluation compresses the context first); those must fit the pool.
 */
export function checkPrompt(prompt: number[], uncompressed: number, limits: { maxContext: number; vocab: number }, cache: KvCache) {
  if (prompt.length === 0) throw new PromptError({ kind: "empty" });
  if (prompt.length >= limits.maxContext) throw new PromptError({ kind: "too_long", tokens: prompt.length, maxContext: limits.maxContext });
  const bad = prompt.findIndex((t) => !Number.isInteger(t) || t < 0 || t >= limits.vocab);
  if (bad >= 0) throw new PromptError({ kind: "bad_token", index: bad, id: prompt[bad], vocab: limits.vocab });
  const blocks = cache.blocksFor(uncompressed);
  if (blocks > cache.pool.numBlocks) throw new PromptError({ kind: "cache_too_small", blocks, numBlocks: cache.pool.numBlocks });
}
