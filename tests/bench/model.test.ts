// A model built on the GPU from seeds (randomWeights) computes what the CPU forward
// computes on the same weights, sharded or not; and timing replays run the captured
// dispatches of a real step.
import { describe, expect, test } from "bun:test";
import { Engine } from "../../src/engine/engine.ts";
import { Sequence } from "../../src/engine/sequence.ts";
import { configFromShape, SHAPES, type ModelShape } from "../../bench/shapes.ts";
import { randomWeights } from "../../bench/random-weights.ts";
import { capture, GpuTimer } from "../../bench/profile.ts";
import { placeholderTokenizer } from "../../bench/common.ts";
import { cpuForward } from "../fixtures/tiny-model.ts";
import { randomModelReference } from "../fixtures/bench-reference.ts";
import { maxAbsDiff } from "../fixtures/gpu-helpers.ts";
import { GREEDY } from "../fixtures/helpers.ts";

const ids = [1, 45, 300, 7, 99, 12, 260, 3, 511, 0, 77, 18, 200, 5, 6, 150, 42, 43];
/** a prompt past the GEMV's 32 rows, so that its prefill runs the GEMM */
const longIds = [...ids, ...ids, ...ids].slice(0, 40);

async function randomEngine(s: ModelShape, seed: number, maxBindingBytes?: number) {
  const cfg = configFromShape(s, 256);
  return Engine.create(cfg, placeholderTokenizer(), (gpu, kc) => randomWeights(gpu, kc, cfg, seed), { kvMemory: 4 * 2 ** 20, maxBindingBytes });
}

async function firstLogits(e: Engine, prompt: number[]) {
  const s = new Sequence(prompt, { maxTokens: 4, sampling: GREEDY, ignoreEos: true, captureLogits: true });
  e.add(s);
  await e.runUntilIdle();
  return { logits: s.firstLogits!, output: s.output };
}

describe("random weights built on the GPU", () => {
  for (const tied of [false, true]) {
    test(`forward matches the CPU reference (${tied ? "tied" : "untied"} head)`, async () => {
      const shape = { ...SHAPES.tiny, tiedEmbeddings: tied };
      const e = await randomEngine(shape, 3);
      try {
        const { logits, output } = await firstLogits(e, ids);
        const want = cpuForward(randomModelReference(shape, 3), ids);
        const scale = Math.max(...want.map(Math.abs));
        expect(scale).toBeGreaterThan(0.01); // a live model, not zeros
        expect(maxAbsDiff(logits, want)).toBeLessThan(scale * 2e-3);
        // greedy decode follows the CPU argmax
        const seq = [...ids];
        for (const t of output.slice(0, 2)) {
          const l = cpuForward(randomModelReference(shape, 3), seq);
          expect(l[t]).toBeCloseTo(Math.max(...l), 4);
          seq.push(t);
        }
      } finally {
        e.destroy();
      }
    });
  }

  test("row shards hold the same model as one binding, and seeds change it", async () => {
    const a = await randomEngine(SHAPES.tiny, 5);
    const b = await randomEngine(SHAPES.tiny, 5, 4096);
    const c = await randomEngine(SHAPES.tiny, 6);
    try {
      expect(a.weights.lmHead.shards.length).toBe(1);
      expect(b.weights.lmHead.shards.length).toBeGreaterThan(1);
      expect(b.weights.layers[0].gateUp.shards.length).toBeGreaterThan(1);
      const [la, lb, lc] = [await firstLogits(a, ids), await firstLogits(b, ids), await firstLogits(c, ids)];
      expect(maxAbsDiff(la.logits, lb.logits)).toBeLessThan(1e-5);
      expect(maxAbsDiff(la.logits, lc.logits)).toBeGreaterThan(1e-3);
    } finally {
      for (const e of [a, b, c]) e.destroy();
    }
  });

  test("a captured step replays under the timer and leaves the engine usable", async () => {
    const e = await randomEngine(SHAPES.tiny, 7);
    const timer = new GpuTimer(e.kc);
    try {
      const seq = e.cache.open()!;
      e.cache.reserve(seq, longIds.length);
      e.model.reserveHistory(1);
      const list = capture(e.kc, () => e.model.step({ seqs: [{ seq, tokens: longIds, n: longIds.length, pos0: 0, sampling: GREEDY, counter: 0 }], tokensFromGpu: false, histOffset: 0 }));
      // prefill: embed, per layer 9 (rmsnorm, qkv, rope_append, attention, o, rmsnorm, gate_up, swiglu, down),
      // lm_head+norm (one row per sequence: the GEMV), sample
      expect(list.length).toBe(1 + 9 * SHAPES.tiny.layers + 2);
      expect(list.map((d) => d.k.key.split(":")[0]).slice(0, 3)).toEqual(["embed", "rmsnorm", "gemm"]);
      const t = await timer.time(list, { minPassMs: 1, passes: 2 });
      expect(t.ms).toBeGreaterThan(0);
      expect(t.samples.length).toBe(2);
      e.cache.release(seq);
      // decode: the norms and swiglu fold into the GEMVs: embed, per layer 6 (qkv+norm,
      // rope_append, attention, o, gate_up+norm+swiglu, down), lm_head+norm, sample
      const dseq = e.cache.open()!;
      e.cache.reserve(dseq, ids.length + 1);
      e.cache.commit(dseq, ids.length);
      const decode = capture(e.kc, () => e.model.step({ seqs: [{ seq: dseq, tokens: [5], n: 1, pos0: ids.length, sampling: GREEDY, counter: 0 }], tokensFromGpu: false, histOffset: 0 }));
      expect(decode.length).toBe(1 + 6 * SHAPES.tiny.layers + 2);
      expect(decode.map((d) => d.k.key.split(":")[0]).slice(0, 7)).toEqual(["embed", "gemv", "rope_append", "attention", "gemv", "gemv", "gemv"]);
      e.cache.release(dseq);
      // the replayed step ran the forward for real: the engine still generates as before
      const again = await firstLogits(e, ids);
      expect(again.output.length).toBe(4);
    } finally {
      timer.destroy();
      e.destroy();
    }
  });
});
