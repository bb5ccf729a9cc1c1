// Engine behaviour on kvc-nano: batched decode of sequences of different lengths
// equals each run alone, lookahead doesn't change tokens, seeded sampling is
// reproducible, and every block returns to the pool.
import { expect, test } from "bun:test";
import { Sequence } from "../../src/engine/sequence.ts";
import { PromptError } from "../../src/engine/prompt-check.ts";
import { readBuffer } from "../../src/gpu/buffers.ts";
import { engineFor, GREEDY, ROOT } from "../fixtures/helpers.ts";

const NANO = `${ROOT}/models/kvc-nano`;
const prompts = [
  "Once upon a time",
  "The President of the United States",
  "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife. However little known the feelings",
  "Mr.",
];

async function runAll(lookahead: number, texts: string[], sampling = GREEDY) {
  const e = await engineFor(NANO, { lookahead });
  const seqs = texts.map((t) => new Sequence(e.tokenizer.encode(t), { maxTokens: 40, sampling, ignoreEos: true }));
  for (const s of seqs) e.add(s);
  await e.runUntilIdle();
  expect(e.cache.pool.numUsedBlocks).toBe(0);
  return seqs.map((s) => s.output);
}

test("batched decode equals each sequence alone", async () => {
  const together = await runAll(4, prompts);
  for (let i = 0; i < prompts.length; i++) {
    const [alone] = await runAll(4, [prompts[i]]);
    expect(together[i]).toEqual(alone);
  }
});

test("lookahead 1 and 7 give the same tokens", async () => {
  expect(await runAll(1, prompts)).toEqual(await runAll(7, prompts));
});

test("a sequence joining mid-decode runs beside the others", async () => {
  const e = await engineFor(NANO, { lookahead: 2 });
  const a = new Sequence(e.tokenizer.encode(prompts[0]), { maxTokens: 30, sampling: GREEDY, ignoreEos: true });
  const b = new Sequence(e.tokenizer.encode(prompts[2]), { maxTokens: 10, sampling: GREEDY, ignoreEos: true });
  e.add(a);
  await e.step(); // prefill a
  await e.step(); // decode a
  e.add(b);
  await e.runUntilIdle();
  const [aloneA, aloneB] = [(await runAll(2, [prompts[0]]))[0].slice(0, 30), (await runAll(2, [prompts[2]]))[0].slice(0, 10)];
  expect(a.output).toEqual(aloneA);
  expect(b.output).toEqual(aloneB);
  expect(b.finishReason).toBe("length");
});

test("seeded sampling is reproducible and independent of batching", async () => {
  const s1 = { temperature: 0.9, topP: 0.95, topK: 50, seed: 42 };
  const [x] = await runAll(4, [prompts[1]], s1);
  const [y] = await runAll(3, [prompts[1]], s1);
  expect(x).toEqual(y);
  const [z] = await runAll(4, [prompts[1]], { ...s1, seed: 43 });
  expect(z).not.toEqual(x);
});

test("a batch-invariant (seeded) sampled sequence keeps its tokens beside prompts that arrive and decode with it", async () => {
  const e = await engineFor(NANO, { lookahead: 4 });
  const filler = (i: number) =>
    new Sequence(e.tokenizer.encode(`It is a truth universally acknowledged ${"the union ".repeat(60 + 40 * i)}`), { maxTokens: 100, sampling: { temperature: 1, topP: 1, topK: 0, seed: 100 + i }, ignoreEos: true });
  // seeds whose answers changed when their prompt shared a prefill step with these
  for (const seed of [1, 2, 5]) {
    const opts = { maxTokens: 100, sampling: { temperature: 1, topP: 1, topK: 0, seed }, ignoreEos: true, batchInvariant: true };
    const ids = e.tokenizer.encode(["The President of the United States", "Once upon a time", "Mr. Darcy"][seed % 3]);
    const alone = (await e.generate(ids, opts)).output;
    const main = new Sequence(ids, opts);
    for (const s of [filler(0), main, filler(1), filler(2)]) e.add(s);
    await e.runUntilIdle();
    expect({ seed, tokens: main.output }).toEqual({ seed, tokens: alone });
  }
  expect(e.cache.pool.numUsedBlocks).toBe(0);
});

test("EOS stops a sequence unless ignored; abort frees blocks at once", async () => {
  const e = await engineFor(NANO, { lookahead: 4 });
  // chat prompts end their answer with <|eot_id|> (id 4), an EOS of this model
  const ids = e.tokenizer.encodeChat([{ role: "user", content: "Say hello." }]);
  const s = await e.generate(ids, { maxTokens: 200, sampling: GREEDY, ignoreEos: false });
  if (s.finishReason === "stop") expect(e.cfg.eosIds).toContain(s.output[s.output.length - 1]);
  else expect(s.output.length).toBe(200);
  // rounds chained behind the one that ended it wrote past the end: all given back
  expect(e.stats.chainedSteps).toBeGreaterThan(0);
  expect(e.cache.pool.numUsedBlocks).toBe(0);
  const long = new Sequence(ids, { maxTokens: 500, sampling: GREEDY, ignoreEos: true });
  e.add(long);
  await e.step();
  await e.step();
  expect(e.cache.pool.numUsedBlocks).toBeGreaterThan(0);
  e.abort(long);
  expect(long.finishReason).toBe("abort");
  expect(e.cache.pool.numUsedBlocks).toBe(0);
  await e.runUntilIdle();
});

test("an abort asked while a step runs is applied when the step ends", async () => {
  const e = await engineFor(NANO, { lookahead: 4 });
  const s = new Sequence(e.tokenizer.encode(prompts[0]), { maxTokens: 500, sampling: GREEDY, ignoreEos: true });
  e.add(s);
  await e.step(); // the prefill
  const step = e.step();
  e.abort(s);
  // the step's bookkeeping after its readback still sees its batch whole
  expect(s.finished).toBe(false);
  await step;
  expect(s.finishReason).toBe("abort");
  await e.runUntilIdle();
  expect(e.cache.pool.numUsedBlocks).toBe(0);
});

test("continual compression: the next round decodes behind the ranking; every head keeps distinct positions, the newest whole", async () => {
  const e = await engineFor(NANO, { lookahead: 4 });
  const pw = 8, bs = e.cache.blockSize;
  const s = new Sequence(e.tokenizer.encode(prompts[2]), { maxTokens: 60, sampling: GREEDY, ignoreEos: true, compression: { method: "kvcompress", rate: 4, interval: 8, protectedWindow: pw } });
  e.add(s);
  while (s.output.length < 45) await e.step();
  // passes ranked behind the round still in flight, and the next round behind them
  expect(e.stats.compressAhead).toBeGreaterThan(0);
  expect(e.stats.compressOverlapped).toBeGreaterThan(0);
  expect(s.evictedTokens).toBeGreaterThan(0);
  // read behind whatever is in flight: the host's lengths already count it
  const pos = new Uint32Array(await readBuffer(e.gpu.device, e.cache.pool.pos, 0, e.cache.pool.pos.size));
  for (let h = 0; h < e.cache.heads; h++) {
    const got = Array.from({ length: s.cache!.lengths[h] }, (_, i) => pos[s.cache!.blocks[h][Math.floor(i / bs)] * bs + (i % bs)]);
    expect(new Set(got).size).toBe(got.length);
    for (let p = s.numWrittenTokens - pw; p < s.numWrittenTokens; p++) expect(got).toContain(p);
    expect(Math.max(...got)).toBe(s.numWrittenTokens - 1);
  }
  await e.runUntilIdle();
  expect(s.output.length).toBe(60);
  expect(e.cache.pool.numUsedBlocks).toBe(0);
});

test("bad prompts are refused with a clear message", async () => {
  const e = await engineFor(NANO);
  expect(() => e.add(new Sequence([0, 99999], { maxTokens: 1, sampling: GREEDY, ignoreEos: false }))).toThrow(/outside the vocabulary/);
  expect(() => e.add(new Sequence(new Array(5000).fill(5), { maxTokens: 1, sampling: GREEDY, ignoreEos: false }))).toThrow(/context is 2048/);
  expect(() => e.add(new Sequence([], { maxTokens: 1, sampling: GREEDY, ignoreEos: false }))).toThrow(/at least one token/);
  expect(() => e.add(new Sequence([0, 99999], { maxTokens: 1, sampling: GREEDY, ignoreEos: false }))).toThrow(PromptError);
});

// a sequence that ends by EOS inside a round a compression pass was ranked behind: the
// pass must not treat the round's lookahead keys past the end as the newest (protecting
// them, evicting into the real window); its cache at release holds positions inside
// its context only, and the figures equal a run with short rounds
test("EOS inside a round a pass ranked behind: kept keys stay inside the context, as with short rounds", async () => {
  const prompt = "There is a pass key hidden inside a lot of irrelevant text. Find it and memorize it. " + "The grass is green. ".repeat(40) + "The pass key is 12345. What is the pass key?";
  const run = async (lookahead: number) => {
    const e = await engineFor(NANO, { lookahead });
    const s = new Sequence(e.tokenizer.encode(prompt), { maxTokens: 300, sampling: GREEDY, ignoreEos: false, compression: { method: "kvcompress", rate: 8, interval: 16 }, mapAtRelease: 256 });
    e.add(s);
    await e.runUntilIdle();
    expect(e.cache.pool.numUsedBlocks).toBe(0);
    const m = s.finalMap!;
    const kept = Array.from(m.tokensKept).reduce((a, b) => a + b, 0);
    const inside = (await m.survival!).reduce((a, b) => a + b, 0);
    return { finish: s.finishReason, out: s.output, kept, inside, kv: s.kv };
  };
  const long = await run(16);
  expect(long.finish).toBe("stop");
  expect(long.out.length).toBeLessThan(16); // it ends inside the first round
  expect(long.inside).toBe(long.kept);
  expect(long).toEqual(await run(4));
});
