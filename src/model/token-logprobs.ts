// What kernels/logprobs.wgsl writes for one sampled token, and its reading on the host:
// LP_STRIDE u32 words a row, [logprob of the sampled token, TOP_LOGPROBS_MAX ids,
// TOP_LOGPROBS_MAX logprobs] (f32 bits; unused ids 0xffffffff).

/** the most top alternatives a token carries (OpenAI's top_logprobs limit) */
export const TOP_LOGPROBS_MAX = 20;
export const LP_STRIDE = 1 + 2 * TOP_LOGPROBS_MAX;

/** One generated token's log-probability and its best alternatives, best first. */
export interface TokenLogprobs {
  logprob: number;
  top: { id: number; logprob: number }[];
}

/** Row `row` of a logprobs readback, with its first `n` alternatives. */
export function readTokenLogprobs(words: Uint32Array, row: number, n: number): TokenLogprobs {
  const f = new Float32Array(words.buffer, words.byteOffset, words.length);
  const o = row * LP_STRIDE;
  const top: TokenLogprobs["top"] = [];
  for (let j = 0; j < Math.min(n, TOP_LOGPROBS_MAX); j++) {
    const id = words[o + 1 + j];
    if (id !== 0xffffffff) top.push({ id, logprob: f[o + 1 + TOP_LOGPROBS_MAX + j] });
  }
  return { logprob: f[o], top };
}
