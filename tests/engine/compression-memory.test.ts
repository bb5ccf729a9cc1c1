// Compression frees real memory: a 2048-token prompt on kvc-small compressed at
// rates 2..64 holds about 1/rate of the blocks it would hold uncompressed (plus the
// protected window's floor), heads keep different numbers of tokens, and every
// block returns to the pool at the end.
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { Sequence } from "../../src/engine/sequence.ts";
import { engineFor, GREEDY, modelDir, SHARED } from "../fixtures/helpers.ts";

test("blocks_used <= 1.1 x blocks_uncompressed / rate (+ protected floor) at rates 2..64", async () => {
  const e = await engineFor(modelDir("kvc-small"));
  const text = readFileSync(`${SHARED}/eval/dev/ppl/sotu_2015_barack_obama_d.txt`, "utf8");
  const prompt = e.tokenizer.encode(text).slice(0, 2048);
  expect(prompt.length).toBe(2048);
  const pw = 32;
  const rates = [2, 4, 8, 16, 32, 64];
  const seqs = rates.map((rate) => new Sequence(prompt, { maxTokens: 2, sampling: GREEDY, ignoreEos: true, compression: { method: "kvcompress", rate, protectedWindow: pw } }));
  const lengths: number[][] = [];
  for (const s of seqs) {
    e.add(s);
    // look at the cache right after the post-prefill compression, before release
    while (!s.finished && s.numComputedTokens < prompt.length) await e.step();
    lengths.push(Array.from(s.cache!.lengths));
    await e.runUntilIdle();
  }
  const heads = e.cfg.layers * e.cfg.kvHeads;
  const floorBlocks = heads * Math.ceil(pw / e.cache.blockSize);
  const table = seqs.map((s, i) => ({ rate: rates[i], ...s.kv }));
  console.log(table.map((r) => `rate ${r.rate}: ${r.blocksUsed}/${r.blocksUncompressed} blocks, achieved ${r.compressionRate.toFixed(2)}`).join("\n"));
  for (const r of table) {
    expect(r.contextTokens).toBe(2049); // the prompt and the first output token
    expect(r.blocksUncompressed).toBe(heads * Math.ceil(r.contextTokens / e.cache.blockSize));
    expect(r.blocksUsed).toBeLessThanOrEqual(1.1 * (r.blocksUncompressed / r.rate) + floorBlocks);
    // the budget at the post-prefill compression, plus the first output token in every head
    expect(r.tokensKept).toBeLessThanOrEqual(Math.max(Math.floor((heads * 2048) / r.rate), heads * pw) + heads);
    expect(r.tokensKept + r.evictedTokens).toBe(heads * r.contextTokens);
  }
  // up to 8x the protected floor does not bind: the achieved rate is within 10% of the target
  for (const r of table.filter((x) => x.rate <= 8)) expect(r.compressionRate).toBeGreaterThanOrEqual(r.rate / 1.1);
  // KV-Compress: heads and layers keep different numbers of tokens
  for (const l of lengths.slice(0, 3)) expect(new Set(l).size).toBeGreaterThan(1);
  expect(e.cache.pool.numUsedBlocks).toBe(0);
}, 1_800_000);
