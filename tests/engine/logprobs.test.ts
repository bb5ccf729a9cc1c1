// Token logprobs computed on the GPU next to sampling (kernels/logprobs.wgsl) against
// transformers on kvc-small. golden.json holds all 8192 first-step logits of the first
// prompt (their log-softmax is transformers' logprobs, compared in full) and the top 10
// logits of the first 8 greedy steps of every prompt (logprob differences inside the top
// equal logit differences, so those are compared as differences). Beside that, the
// first-step logprobs equal a CPU log-softmax of kvc's own full logits readback, at
// temperature 0.7 too, and a sampled run reports the logprob of the token it drew.
import { describe, expect, test } from "bun:test";
import { Sequence } from "../../src/engine/sequence.ts";
import type { TokenLogprobs } from "../../src/model/token-logprobs.ts";
import { engineFor, GREEDY, hasShared, modelDir, readJsonFile } from "../fixtures/helpers.ts";
import * as ref from "../fixtures/reference.ts";

const TOL = 1e-2;

function logSoftmax(logits: ArrayLike<number>, temperature = 1): Float64Array {
  const y = Float64Array.from(logits, (x) => x / temperature);
  const mx = Math.max(...y);
  let s = 0;
  for (const v of y) s += Math.exp(v - mx);
  const lse = mx + Math.log(s);
  return y.map((v) => v - lse);
}

describe.skipIf(!hasShared)("logprobs on kvc-small", () => {
  const golden = hasShared ? readJsonFile(`${modelDir("kvc-small")}/golden.json`) : null;

  test("greedy: the sampled token's and the top 20 agree with transformers' log-softmax within 1e-2", async () => {
    const engine = await engineFor(modelDir("kvc-small"));
    for (const [pi, p] of (golden.prompts as any[]).entries()) {
      const lps: TokenLogprobs[] = [];
      const seq = new Sequence(p.prompt_ids, { maxTokens: 8, sampling: GREEDY, ignoreEos: true, captureLogits: true, logprobs: 20, onToken: (_, lp) => lps.push(lp!) });
      engine.add(seq);
      await engine.runUntilIdle();
      expect(seq.output).toEqual(p.greedy_ids.slice(0, 8));
      expect(lps).toHaveLength(8);
      if (pi === 0) {
        const want = logSoftmax(golden.prompt1_first_step_logits);
        expect(Math.abs(lps[0].logprob - want[seq.output[0]])).toBeLessThan(TOL);
        const order = [...want.keys()].sort((a, b) => want[b] - want[a]);
        expect(lps[0].top.map((t) => t.id).slice(0, 5)).toEqual(order.slice(0, 5));
        for (const t of lps[0].top) expect(Math.abs(t.logprob - want[t.id])).toBeLessThan(TOL);
      }
      // every prompt, 8 steps: the top 10's logprobs minus the best one's equal transformers' logit gaps
      for (let s = 0; s < 8; s++) {
        const top10 = p.top10_first8_steps[s] as [number, number][];
        const [bestId, bestLogit] = top10[0];
        expect(lps[s].top[0].id).toBe(bestId);
        expect(Math.abs(lps[s].logprob - lps[s].top[0].logprob)).toBe(0); // greedy draws the best
        for (const [id, logit] of top10) {
          const got = lps[s].top.find((t) => t.id === id);
          if (!got) continue; // a near tie at the 20th place may leave one out
          expect(Math.abs(got.logprob - lps[s].top[0].logprob - (logit - bestLogit))).toBeLessThan(TOL);
        }
        expect(lps[s].top.filter((t) => top10.some(([id]) => id === t.id)).length).toBeGreaterThanOrEqual(9);
      }
      // against a CPU log-softmax of kvc's own logits of the first step
      const own = logSoftmax(seq.firstLogits!);
      for (const t of lps[0].top) expect(Math.abs(t.logprob - own[t.id])).toBeLessThan(1e-4);
    }
    expect(engine.cache.pool.numUsedBlocks).toBe(0);
  }, 300_000);

  test("sampled at temperature 0.7: the drawn token's logprob and the top 5 of the scaled log-softmax", async () => {
    const engine = await engineFor(modelDir("kvc-small"));
    const p = golden.prompts[0];
    const lps: TokenLogprobs[] = [];
    const seq = new Sequence(p.prompt_ids, { maxTokens: 6, sampling: { temperature: 0.7, topP: 1, topK: 0, seed: 5 }, ignoreEos: true, captureLogits: true, logprobs: 5, onToken: (_, lp) => lps.push(lp!) });
    engine.add(seq);
    await engine.runUntilIdle();
    const own = logSoftmax(seq.firstLogits!, 0.7);
    expect(Math.abs(lps[0].logprob - own[seq.output[0]])).toBeLessThan(1e-4);
    const want = ref.logprobs(seq.firstLogits!, 0.7, 5, seq.output[0]);
    expect(lps[0].top.map((t) => t.id)).toEqual(want.top.map(([id]) => id));
    // each later token's logprob is its own, not the best one's, whenever it was not the best
    expect(lps.every((l) => l.logprob <= l.top[0].logprob + 1e-6)).toBe(true);
    expect(lps.every((l) => l.top.length === 5)).toBe(true);
  }, 300_000);
});
