// Teacher-forced perplexity under compression: the text's own next tokens are the
// targets, and the cache is compressed as the text streams, as it would be while
// a sequence decodes (continual mode).
import type { KvCache } from "../cache/kv-cache.ts";
import type { CompressionOptions, KvStats } from "../cache/compression.ts";
import type { LlamaModel } from "../model/llama.ts";
import type { Compressor } from "./compressor.ts";
import { kvStatsOf, Sequence } from "./sequence.ts";

/**
 * Negative log-likelihood of tokens[1..] given what precedes each, in chunks of
 * `interval` tokens whose queries all score the cache, compressed after each chunk
 * (`prefillChunk` tokens a chunk when nothing compresses). One sequence, on an idle engine.
 */
export async function perplexity(
  parts: { cache: KvCache; model: LlamaModel; compressor: Compressor; prefillChunk: number },
  tokens: number[],
  compression: Partial<CompressionOptions>,
): Promise<{ nll: Float32Array; kv: KvStats }> {
  const { cache, model, compressor } = parts;
  const seq = new Sequence(tokens, { maxTokens: 1, sampling: { temperature: 0, topP: 1, topK: 0, seed: 0 }, ignoreEos: true, compression });
  seq.cache = cache.open();
  if (!seq.cache) throw new Error("no free sequence slot");
  const chunk = seq.compressing ? seq.compression.interval : parts.prefillChunk;
  const nll = new Float32Array(tokens.length - 1);
  try {
    for (let p = 0; p < nll.length; p += chunk) {
      const n = Math.min(chunk, nll.length - p);
      if (!cache.reserve(seq.cache, n)) throw new Error(`KV cache too small for a ${tokens.length}-token text; raise --kv-memory`);
      model.step({
        seqs: [{ seq: seq.cache, tokens: tokens.slice(p, p + n), n, pos0: p, sampling: seq.opts.sampling, counter: 0, scoreRows: seq.compressing ? n : 0 }],
        tokensFromGpu: false,
        histOffset: 0,
        nllTargets: Uint32Array.from(tokens.slice(p + 1, p + n + 1)),
      });
      nll.set(await model.readNll(n), p);
      seq.numComputedTokens += n;
      seq.numWrittenTokens += n;
      seq.stepsSinceCompress += n;
      const again = !seq.compression.compressOnce || seq.compressions === 0;
      if (seq.compressing && again && seq.stepsSinceCompress >= seq.compression.interval) await compressor.compress([seq]);
    }
    return { nll, kv: kvStatsOf(cache, seq) };
  } finally {
    cache.release(seq.cache!);
    seq.cache = null;
  }
}
