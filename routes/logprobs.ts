// Token logprobs in OpenAI's two shapes. Chat: `{content: [{token, logprob, bytes,
// top_logprobs: [{token, logprob, bytes}]}]}`. Completions (legacy): `{tokens,
// token_logprobs, top_logprobs: [{token: logprob}], text_offset}`, where the dict holds
// the n best and, as vLLM has it, the sampled token too; text_offset counts characters
// of the completion text from its start, across the chunks of a stream.
import type { TokenLogprob } from "../src/serving/generation.ts";

/** choices[].logprobs of a chat completion or chunk; `top` alternatives per token. */
export function chatLogprobs(tokens: TokenLogprob[], top: number) {
  return {
    content: tokens.map((t) => ({
      token: t.token,
      logprob: t.logprob,
      bytes: t.bytes,
      top_logprobs: t.top.slice(0, top).map((a) => ({ token: a.token, logprob: a.logprob, bytes: a.bytes })),
    })),
  };
}

/** A completion's logprobs writer: call it per chunk (or once for a whole answer); it keeps text_offset running. */
export function completionLogprobs(top: number) {
  let offset = 0;
  return (tokens: TokenLogprob[]) => {
    const text_offset: number[] = [];
    for (const t of tokens) {
      text_offset.push(offset);
      offset += t.token.length;
    }
    return {
      tokens: tokens.map((t) => t.token),
      token_logprobs: tokens.map((t) => t.logprob),
      top_logprobs: tokens.map((t) => Object.fromEntries([...t.top.slice(0, top).map((a) => [a.token, a.logprob] as const), [t.token, t.logprob]])),
      text_offset,
    };
  };
}
