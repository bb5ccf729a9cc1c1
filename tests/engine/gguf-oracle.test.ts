// kvc against llama.cpp (node-llama-cpp's CPU build, tools/llamacpp/oracle.ts) on the
// same GGUF fixtures, fed the same prompt ids: greedy tokens and first-step
// log-probabilities (log-softmax: the logits up to the constant llama.cpp does not report).
//
// Tolerances. llama.cpp's CPU matmuls do not keep activations in f32 as kvc does: F16
// weights meet activations rounded to f16 (measured on kvc-small and stories260K: 0.005
// to 0.008 apart), quantized weights meet activations quantized to 8-bit blocks (Q8_0 /
// Q8_K). That moves llama.cpp's own kvc-small Q8_0 file 0.14-0.22 from its F16 file,
// where kvc's Q8_0 moves 0.075-0.08 (the weights' rounding alone); kvc's Q8_0, Q4_0 and
// Q4_K answers sat 0.12-0.21 from llama.cpp's. Greedy tokens must match for 32 steps
// (F16, Q8_0) or 16 (4-bit); where they part, llama.cpp itself must have seen a near
// tie: kvc's token within the same tolerance of llama.cpp's choice in llama.cpp's own
// log-probabilities. A wrong dequantization moves log-probabilities by whole units.
import { describe, expect, test } from "bun:test";
import { Engine } from "../../src/engine/engine.ts";
import { Sequence } from "../../src/engine/sequence.ts";
import { FIXTURES, type FixtureType } from "../../scripts/make-gguf-fixtures.ts";
import { llamaCppGreedy } from "../../tools/llamacpp/oracle.ts";
import { ggufFixture } from "../fixtures/gguf-fixtures.ts";
import { GREEDY, modelDir, readJsonFile } from "../fixtures/helpers.ts";

const TOL: Record<FixtureType, number> = { f16: 0.03, q8_0: 0.35, q4_0: 0.35, q4_k_m: 0.35 };
const STEPS: Record<FixtureType, number> = { f16: 32, q8_0: 32, q4_0: 16, q4_k_m: 16 };

/** The shared models' own test prompts: two golden text prompts, or stories260K's cases. */
function promptsOf(model: string): number[][] {
  if (model === "stories260K") return readJsonFile(`${modelDir(model)}/expected.json`).cases.map((c: any) => c.prompt_ids);
  return readJsonFile(`${modelDir(model)}/golden.json`).prompts.filter((p: any) => p.kind === "text" && p.prompt_ids.length < 100).map((p: any) => p.prompt_ids);
}

function logSoftmax(l: Float32Array): Float32Array {
  let mx = -Infinity;
  for (const v of l) mx = Math.max(mx, v);
  let s = 0;
  for (const v of l) s += Math.exp(v - mx);
  const lse = mx + Math.log(s);
  return l.map((v) => v - lse);
}

describe("kvc beside llama.cpp on GGUF fixtures", () => {
  for (const [model, type] of FIXTURES) {
    test(`${model} ${type}: greedy tokens and first-step log-probabilities`, async () => {
      const file = ggufFixture(model, type);
      const prompts = promptsOf(model);
      const steps = STEPS[type], tol = TOL[type];
      const oracle = await llamaCppGreedy(file, prompts, steps, 2048);
      const e = await Engine.load(file, { kvMemory: 64 * 2 ** 20 });
      try {
        for (const [i, prompt] of prompts.entries()) {
          const seq = new Sequence(prompt, { maxTokens: steps, sampling: GREEDY, ignoreEos: true, captureLogits: true });
          e.add(seq);
          await e.runUntilIdle();
          const ours = logSoftmax(seq.firstLogits!);
          let worst = 0;
          for (const [t, lp] of oracle.logProbs[i][0]) if (lp > Math.log(1e-3)) worst = Math.max(worst, Math.abs(ours[t] - lp));
          expect(worst, `prompt ${i}: first-step log-probabilities`).toBeLessThan(tol);
          const want = oracle.greedy[i];
          const j = seq.output.findIndex((t, k) => t !== want[k]);
          if (j >= 0) {
            const lp = oracle.logProbs[i][j];
            const gap = (lp.get(want[j]) ?? 0) - (lp.get(seq.output[j]) ?? -Infinity);
            console.log(`${model} ${type} prompt ${i}: parts from llama.cpp at step ${j} (llama.cpp ${want[j]}, kvc ${seq.output[j]}; llama.cpp's log-p gap ${gap.toFixed(3)})`);
            expect(gap, `prompt ${i}: step ${j} is no near tie for llama.cpp`).toBeLessThan(tol);
          }
          expect(seq.output.length).toBe(steps);
        }
      } finally {
        e.destroy();
      }
    }, 600_000);
  }
});
