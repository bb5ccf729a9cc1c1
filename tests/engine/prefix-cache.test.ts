// Prefix caching and shared prompt blocks on kvc-nano (lavapipe): a prompt prefilled
// again from cached blocks gives the same greedy output; a compressed request copies
// the cached prefix it reuses and leaves it intact; cached blocks are reclaimed least
// recently used under pool pressure and never while a sequence holds them; n = 4
// choices hold the prompt's blocks once; a compressed prefix is reused as it was.
import { expect, test } from "bun:test";
import { BlockPool } from "../../src/cache/block-pool.ts";
import { blockHashes } from "../../src/cache/prefix-cache.ts";
import { Sequence } from "../../src/engine/sequence.ts";
import type { Engine } from "../../src/engine/engine.ts";
import type { CompressionOptions } from "../../src/cache/compression.ts";
import { engineFor, GREEDY, ROOT } from "../fixtures/helpers.ts";

const NANO = `${ROOT}/models/kvc-nano`;
const AUSTEN =
  "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife. However little known the feelings or views of such a man may be on his first entering a neighbourhood, this truth is so well fixed in the minds of the surrounding families, that he is considered the rightful property of some one or other of their daughters.";
const UNION =
  "We the People of the United States, in Order to form a more perfect Union, establish Justice, insure domestic Tranquility, provide for the common defence, promote the general Welfare, and secure the Blessings of Liberty to ourselves and our Posterity, do ordain and establish this Constitution for the United States of America.";
const ELLIOT =
  "Sir Walter Elliot, of Kellynch Hall, in Somersetshire, was a man who, for his own amusement, never took up any book but the Baronetage; there he found occupation for an idle hour, and consolation in a distressed one; there his faculties were roused into admiration and respect, by contemplating the limited remnant of the earliest patents; there any unwelcome sensations, arising from domestic affairs changed naturally into pity and contempt as he turned over the almost endless creations of the last century; and there, if every other leaf were powerless, he could read his own history with an interest which never failed.";

async function run(e: Engine, prompt: number[], maxTokens: number, compression?: Partial<CompressionOptions>) {
  const s = new Sequence(prompt, { maxTokens, sampling: GREEDY, ignoreEos: true, compression });
  e.add(s);
  await e.runUntilIdle();
  return s;
}

test("a cached prefix gives the same greedy output; a compressed request copies it and leaves it intact", async () => {
  const e = await engineFor(NANO, { kvMemory: 4 * 2 ** 20 });
  const p = e.tokenizer.encode(`${UNION} Therefore`);
  const cold = await run(e, p, 24);
  expect(cold.cachedTokens).toBe(0);
  const full = Math.floor(p.length / 16);
  expect(e.cache.pool.numUsedBlocks).toBe(0);
  expect(e.cache.pool.numIdleCachedBlocks).toBeGreaterThanOrEqual(full * e.cache.heads);
  const warm = await run(e, p, 24);
  expect(warm.cachedTokens).toBe(Math.floor((p.length - 1) / 16) * 16);
  expect(warm.output).toEqual(cold.output);
  // a compressed request reuses the cached blocks up to its observation window, scores
  // and compacts its own copy
  const squeezed = await run(e, p, 24, { method: "kvcompress", rate: 2 });
  expect(squeezed.cachedTokens).toBe(Math.floor((p.length - 8) / 16) * 16);
  expect(squeezed.kv.evictedTokens).toBeGreaterThan(0);
  const again = await run(e, p, 24);
  expect(again.cachedTokens).toBe(warm.cachedTokens);
  expect(again.output).toEqual(cold.output);
  expect(e.cache.pool.numUsedBlocks).toBe(0);
}, 300_000);

test("pool pressure reclaims idle cached blocks oldest first, never blocks a sequence holds", async () => {
  // 160 blocks of 8 heads: room for two cached prompts beside a third request's
  const e = await engineFor(NANO, { kvMemory: 160 * BlockPool.bytesPerBlock(16, 32) });
  expect(e.cache.pool.numBlocks).toBe(160);
  const a = e.tokenizer.encode(AUSTEN).slice(0, 80);
  const b = e.tokenizer.encode(`${UNION} ${AUSTEN}`).slice(0, 80);
  const big = e.tokenizer.encode(ELLIOT).slice(0, 150);
  const hashes = (p: number[]) => blockHashes(p, 16, "");
  const cachedOf = (p: number[]) => e.sharing.prefix.match(hashes(p), 99).length;
  const soloA = await run(e, a, 40);
  await run(e, b, 8);
  expect(cachedOf(a)).toBe(5);
  expect(cachedOf(b)).toBe(5);
  // held: a sequence on `a` holds its first four cached blocks and decodes 40 tokens
  const held = new Sequence(a, { maxTokens: 40, sampling: GREEDY, ignoreEos: true });
  e.add(held);
  while (held.output.length < 2) await e.step();
  expect(held.cachedTokens).toBe(64);
  const heldIds = held.cache!.blocks.flatMap((l) => l.slice(0, 4));
  for (const id of heldIds) expect(e.cache.pool.refCount(id)).toBe(1);
  // a long prompt needs more than the free stack: idle cached blocks go, oldest first
  const pressing = new Sequence(big, { maxTokens: 8, sampling: GREEDY, ignoreEos: true });
  e.add(pressing);
  await e.runUntilIdle();
  expect(cachedOf(b)).toBeLessThan(5); // b's blocks (idle) were reclaimed, its end first
  expect(cachedOf(a)).toBeGreaterThanOrEqual(4); // the blocks `held` held were not
  expect(held.output).toEqual(soloA.output);
  expect(e.stats.preemptions).toBe(0);
  expect(e.cache.pool.numUsedBlocks).toBe(0);
}, 300_000);

test("n = 4 choices hold the prompt's blocks once: prompt + 4 x output blocks + a partial block per head per choice", async () => {
  const e = await engineFor(NANO, { kvMemory: 4 * 2 ** 20 });
  const p = e.tokenizer.encode(ELLIOT).slice(0, 85);
  const maxTokens = 24;
  const solo = await run(e, p, maxTokens);
  // the solo run cached its blocks: the choices' prompt differs in its last token, so
  // their parent's prefill is theirs (its blocks come from the solo run's cache all the same)
  const prompt = [...p.slice(0, 84), p[84] + 1];
  const choices = [0, 1, 2, 3].map((i) => new Sequence(prompt, { maxTokens, sampling: { temperature: 1, topP: 1, topK: 0, seed: 100 + i }, ignoreEos: true }));
  const parent = e.addChoices(choices);
  expect(choices).not.toContain(parent);
  let peak = 0;
  while (!e.idle) {
    await e.step();
    peak = Math.max(peak, e.cache.pool.numUsedBlocks);
  }
  const H = e.cache.heads;
  const promptBlocks = e.cache.blocksFor(prompt.length);
  const outputBlocks = e.cache.blocksFor(maxTokens);
  expect(peak).toBeLessThanOrEqual(promptBlocks + 4 * outputBlocks + 4 * H);
  expect(peak).toBeLessThan(4 * e.cache.blocksFor(prompt.length + maxTokens));
  for (const c of choices) expect(c.output.length).toBe(maxTokens);
  expect(new Set(choices.map((c) => c.output.join())).size).toBeGreaterThan(1);
  // greedy choices are the answer alone
  const greedy = [0, 1].map(() => new Sequence(p, { maxTokens, sampling: GREEDY, ignoreEos: true }));
  e.addChoices(greedy);
  await e.runUntilIdle();
  for (const g of greedy) expect(g.output).toEqual(solo.output);
  expect(e.cache.pool.numUsedBlocks).toBe(0);
}, 300_000);

test("a compressed prefix (cache_prefix) is compressed once and reused as it was", async () => {
  const e = await engineFor(NANO, { kvMemory: 4 * 2 ** 20 });
  const doc = e.tokenizer.encode(`${ELLIOT} ${AUSTEN}`);
  const question = e.tokenizer.encode(" Who read the Baronetage?", false);
  const compression = { method: "snapkv", rate: 4, cachePrefix: true, compressOnce: true } as const;
  const ask = async () => {
    const s = new Sequence([...doc, ...question], { maxTokens: 12, sampling: GREEDY, ignoreEos: true, compression, prefixEnd: doc.length });
    e.add(s);
    await e.runUntilIdle();
    return s;
  };
  const cold = await ask();
  const at = Math.floor(doc.length / 16) * 16;
  expect(cold.cachePrefixAt).toBe(at);
  expect(cold.cachedTokens).toBeLessThan(at);
  const warm = await ask();
  expect(warm.cachedTokens).toBe(at);
  expect(warm.output).toEqual(cold.output);
  expect(warm.kv).toEqual(cold.kv);
  // other settings are another prefix
  const other = new Sequence([...doc, ...question], { maxTokens: 4, sampling: GREEDY, ignoreEos: true, compression: { ...compression, rate: 2 }, prefixEnd: doc.length });
  e.add(other);
  await e.runUntilIdle();
  expect(other.cachedTokens).toBeLessThan(at);
  expect(e.cache.pool.numUsedBlocks).toBe(0);
}, 300_000);

test("compressed choices each compress their own copy; the shared blocks stay as they were", async () => {
  const e = await engineFor(NANO, { kvMemory: 4 * 2 ** 20 });
  const p = e.tokenizer.encode(`${AUSTEN} ${ELLIOT}`).slice(0, 150);
  const plain = await run(e, p, 16);
  const compression = { method: "kvcompress", rate: 2 } as const;
  const alone = await run(e, p, 16, compression);
  const choices = [0, 1, 2].map(() => new Sequence(p, { maxTokens: 16, sampling: GREEDY, ignoreEos: true, compression }));
  e.addChoices(choices);
  await e.runUntilIdle();
  for (const c of choices) {
    expect(c.output).toEqual(alone.output);
    expect(c.kv.evictedTokens).toBeGreaterThan(0);
  }
  const again = await run(e, p, 16);
  expect(again.cachedTokens).toBe(Math.floor((p.length - 1) / 16) * 16);
  expect(again.output).toEqual(plain.output);
  expect(e.cache.pool.numUsedBlocks).toBe(0);
}, 300_000);

test("admission counts cached blocks another sequence holds as no cost: a request sharing a running prompt starts at once", async () => {
  // 144 blocks: one 150-token prompt decoding 64 tokens holds up to 112; a second copy would not fit beside it
  const e = await engineFor(NANO, { kvMemory: 144 * BlockPool.bytesPerBlock(16, 32) });
  const p = e.tokenizer.encode(`${ELLIOT} ${AUSTEN}`).slice(0, 150);
  const first = new Sequence(p, { maxTokens: 64, sampling: GREEDY, ignoreEos: true });
  e.add(first);
  while (first.output.length < 2) await e.step();
  expect(e.cache.pool.numFreeBlocks).toBeLessThan(e.cache.blocksFor(p.length) + e.cache.heads);
  let firstDoneAtStart = null as boolean | null;
  const second = new Sequence(p, { maxTokens: 8, sampling: GREEDY, ignoreEos: true, onToken: () => (firstDoneAtStart ??= first.finished) });
  e.add(second);
  await e.runUntilIdle();
  expect(second.cachedTokens).toBe(144);
  expect(firstDoneAtStart).toBe(false);
  expect(second.output).toEqual(first.output.slice(0, 8));
  expect(e.stats.preemptions).toBe(0);
  expect(e.cache.pool.numUsedBlocks).toBe(0);
}, 300_000);
