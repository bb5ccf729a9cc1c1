// Constrained decoding through the engine (kvc-nano, xgrammar over its vocabulary):
// sequences under a JSON-schema grammar beside unconstrained ones, with continual KV
// compression passes between their steps, all sampled at temperature 1; every
// constrained answer parses and fits, and the unconstrained ones keep their lookahead.
import { expect, test } from "bun:test";
import { Sequence } from "../../src/engine/sequence.ts";
import { Grammars } from "../../src/serving/grammar.ts";
import { NANO } from "../fixtures/server-helpers.ts";
import { engineFor } from "../fixtures/helpers.ts";

const SCHEMA = { type: "object", properties: { party: { enum: ["whig", "tory"] }, seats: { type: "integer", minimum: 0, maximum: 999 } }, required: ["party", "seats"], additionalProperties: false };

test("grammar-constrained sequences beside free ones, under continual compression", async () => {
  const engine = await engineFor(NANO);
  const grammars = new Grammars(engine.tokenizer, engine.cfg.vocab, engine.cfg.eosIds);
  const compression = { method: "kvcompress" as const, rate: 2, interval: 3, protectedWindow: 4, observationWindow: 4 };
  const prompt = engine.tokenizer.encode("The President of the United States said that the party");
  const constrained = await Promise.all(Array.from({ length: 6 }, async (_, i) => {
    const c = await grammars.constraint({ kind: "json_schema", schema: SCHEMA, strict: true });
    return { c, seq: new Sequence(prompt, { maxTokens: 60, sampling: { temperature: 1, topP: 1, topK: 0, seed: i }, ignoreEos: false, compression, constraint: c }) };
  }));
  const free = Array.from({ length: 3 }, (_, i) => new Sequence(prompt, { maxTokens: 30, sampling: { temperature: 1, topP: 1, topK: 0, seed: 100 + i }, ignoreEos: true, compression }));
  for (const { seq } of constrained) engine.add(seq);
  for (const s of free) engine.add(s);
  await engine.runUntilIdle();
  for (const { seq, c } of constrained) {
    expect(seq.finishReason).toBe("stop");
    expect(c.terminated).toBe(true);
    const o = JSON.parse(engine.tokenizer.decode(seq.output));
    expect(["whig", "tory"]).toContain(o.party);
    expect(Number.isInteger(o.seats) && o.seats >= 0 && o.seats <= 999).toBe(true);
    expect(seq.compressions).toBeGreaterThan(0);
    c.dispose();
  }
  for (const s of free) expect(s.output).toHaveLength(30);
  expect(engine.cache.pool.numUsedBlocks).toBe(0);
}, 300_000);

test("a free sequence decodes its k steps a round beside constrained ones, to the same tokens as alone", async () => {
  const engine = await engineFor(NANO);
  const grammars = new Grammars(engine.tokenizer, engine.cfg.vocab, engine.cfg.eosIds);
  const prompt = engine.tokenizer.encode("The President of the United States said that");
  // batch-invariant and seeded: its tokens do not depend on what runs beside it
  const freeSeq = () => new Sequence(prompt, { maxTokens: 24, sampling: { temperature: 1, topP: 1, topK: 0, seed: 9 }, ignoreEos: true, batchInvariant: true });
  const alone = await engine.generate(prompt, freeSeq().opts);
  const beside = freeSeq();
  const cs = await Promise.all([0, 1].map(() => grammars.constraint({ kind: "json_schema", schema: SCHEMA, strict: true })));
  const constrained = cs.map((c, i) => new Sequence(prompt, { maxTokens: 60, sampling: { temperature: 1, topP: 1, topK: 0, seed: i }, ignoreEos: false, batchInvariant: true, constraint: c }));
  // the free one first in the batch and last: submitRound orders constrained ones last either way
  engine.add(constrained[0]);
  engine.add(beside);
  engine.add(constrained[1]);
  const steps0 = engine.stats.decodeSteps;
  await engine.runUntilIdle();
  expect(beside.output).toEqual(alone.output);
  for (const s of constrained) expect(() => JSON.parse(engine.tokenizer.decode(s.output))).not.toThrow();
  // rounds of lookahead steps went on while the constrained ones took one step each
  const rounds = Math.max(...constrained.map((s) => s.output.length));
  expect(engine.stats.decodeSteps - steps0).toBeGreaterThan(rounds);
  for (const c of cs) c.dispose();
  expect(engine.cache.pool.numUsedBlocks).toBe(0);
}, 300_000);
