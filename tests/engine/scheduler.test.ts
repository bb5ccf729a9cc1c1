// Scheduling under memory pressure on kvc-nano: a pool that holds about two of
// the sequences forces admission waits and preemption by recompute; every
// sequence still finishes with the tokens it gets alone (greedy), and every block
// comes back. Compressed sequences shrink instead of being preempted.
import { expect, test } from "bun:test";
import { BlockPool } from "../../src/cache/block-pool.ts";
import { Sequence } from "../../src/engine/sequence.ts";
import type { CompressionOptions } from "../../src/cache/compression.ts";
import { engineFor, GREEDY, ROOT } from "../fixtures/helpers.ts";

const NANO = `${ROOT}/models/kvc-nano`;
const texts = [
  "It is a truth universally acknowledged, that a single man in possession of a good fortune",
  "The President spoke to the Congress about the state of the Union",
  "Sir Walter Elliot, of Kellynch Hall, in Somersetshire, was a man who",
  "We the People of the United States, in Order to form a more perfect Union",
];
const OUT = 70;

async function run(kvMemory: number | undefined, idx: number[], compression?: Partial<CompressionOptions>) {
  const e = await engineFor(NANO, kvMemory ? { kvMemory } : {});
  const before = e.stats.preemptions;
  const seqs = idx.map((i) => new Sequence(e.tokenizer.encode(texts[i]), { maxTokens: OUT, sampling: GREEDY, ignoreEos: true, compression }));
  for (const s of seqs) e.add(s);
  await e.runUntilIdle();
  expect(e.cache.pool.numUsedBlocks).toBe(0);
  return { outputs: seqs.map((s) => s.output), preemptions: e.stats.preemptions - before, seqs };
}

test("preemption by recompute keeps every output equal to its run alone", async () => {
  const alone = [];
  for (let i = 0; i < texts.length; i++) alone.push((await run(undefined, [i])).outputs[0]);
  // 8 heads x ceil(~90 tokens / 16) blocks per sequence: room for about two at full length
  const tight = 8 * 6 * 2 * BlockPool.bytesPerBlock(16, 32);
  const r = await run(tight, [0, 1, 2, 3]);
  expect(r.preemptions).toBeGreaterThan(0);
  for (let i = 0; i < texts.length; i++) {
    expect(r.outputs[i].length).toBe(OUT);
    expect(r.outputs[i]).toEqual(alone[i]);
  }
  expect(r.seqs.some((s) => s.preemptions > 0)).toBe(true);
}, 600_000);

test("compressed sequences shrink before anything is preempted", async () => {
  const tight = 8 * 6 * 2 * BlockPool.bytesPerBlock(16, 32);
  const r = await run(tight, [0, 1, 2, 3], { method: "kvcompress", maxCacheTokens: 24, protectedWindow: 8, interval: 8 });
  for (const o of r.outputs) expect(o.length).toBe(OUT);
  expect(r.preemptions).toBe(0);
  for (const s of r.seqs) expect(s.kv.evictedTokens).toBeGreaterThan(0);
}, 600_000);
