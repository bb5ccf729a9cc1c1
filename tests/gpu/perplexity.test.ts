// Teacher-forced scoring: the token_nll kernel against a CPU reference, and
// Engine.perplexity against transformers' logits (golden.json), chunked or not,
// with and without streaming compression.
import { expect, test } from "bun:test";
import { getGpu, maxAbsDiff, rand, readF32, up, variants, zeros } from "../fixtures/gpu-helpers.ts";
import { engineFor, modelDir, readJsonFile, ROOT } from "../fixtures/helpers.ts";

function nllRef(logits: Float32Array, V: number, targets: Uint32Array): number[] {
  return Array.from(targets, (t, r) => {
    if (t === 0xffffffff) return 0;
    const row = logits.subarray(r * V, (r + 1) * V);
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((a, x) => a + Math.exp(x - m), 0));
    return lse - row[t];
  });
}

test("token_nll matches the CPU reference", async () => {
  await getGpu();
  const [{ kc }] = await variants();
  for (const [V, M] of [[1000, 5], [37, 3], [8192, 2]]) {
    const logits = rand(V * M, V + M, 8);
    const targets = Uint32Array.from({ length: M }, (_, r) => (r === 1 ? 0xffffffff : (r * 977) % V));
    const out = await zeros(M * 4);
    const st = kc.step();
    st.dispatch(kc.kernel("token_nll"), [await up(logits), await up(targets), out], [V, M], [M, 1]);
    st.submit();
    expect(maxAbsDiff(await readF32(out, M), nllRef(logits, V, targets))).toBeLessThan(1e-4);
  }
}, 60_000);

test("perplexity equals transformers' log-likelihood and does not depend on chunking", async () => {
  const golden = readJsonFile(`${modelDir("kvc-nano")}/golden.json`);
  const e = await engineFor(`${ROOT}/models/kvc-nano`);
  const p = golden.prompts[0];
  const ids = [...p.prompt_ids, p.greedy_ids[0]];
  const { nll, kv } = await e.perplexity(ids);
  expect(nll.length).toBe(ids.length - 1);
  const V = golden.prompt1_first_step_logits.length;
  const want = nllRef(Float32Array.from(golden.prompt1_first_step_logits), V, Uint32Array.from([p.greedy_ids[0]]))[0];
  expect(Math.abs(nll[nll.length - 1] - want)).toBeLessThan(2e-3);
  expect(kv.compressionRate).toBe(1);
  // the same text in 16-token chunks (compression that never has to evict) gives the same numbers
  const chunked = await e.perplexity(ids, { method: "kvcompress", rate: 1, interval: 16 });
  expect(maxAbsDiff(chunked.nll, nll)).toBeLessThan(2e-3);
  expect(e.cache.pool.numUsedBlocks).toBe(0);
}, 120_000);

test("streaming compression raises perplexity a little and keeps the cache small", async () => {
  const e = await engineFor(`${ROOT}/models/kvc-nano`);
  const text = "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife. ".repeat(6);
  const ids = e.tokenizer.encode(text);
  const full = await e.perplexity(ids);
  const small = await e.perplexity(ids, { method: "kvcompress", maxCacheTokens: 48, protectedWindow: 16, interval: 8 });
  const mean = (x: Float32Array) => x.reduce((a, b) => a + b, 0) / x.length;
  expect(small.kv.tokensKept).toBeLessThanOrEqual(e.cfg.layers * e.cfg.kvHeads * (48 + 8));
  expect(small.kv.evictedTokens).toBeGreaterThan(0);
  // tokens seen before anything was evicted score the same
  expect(maxAbsDiff(small.nll.slice(0, 48), full.nll.slice(0, 48))).toBeLessThan(2e-3);
  expect(Number.isFinite(mean(small.nll))).toBe(true);
  expect(mean(small.nll)).not.toBe(mean(full.nll));
  expect(e.perplexity([1])).rejects.toThrow(/two tokens/);
}, 120_000);
