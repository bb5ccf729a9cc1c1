// onnxruntime-web (wasm, CPU) as an independent oracle: the same weights as an ONNX
// graph (bench/ort/llama-onnx.ts), run by onnxruntime's own kernels. kvc on lavapipe
// must give its greedy ids and first-step logits within 2e-2 on every golden prompt,
// so a broken kernel fails here even if the transformers golden files were remade
// from broken code. The graph itself is checked against those golden logits once.
import { describe, expect, test } from "bun:test";
import * as ort from "onnxruntime-web";
import { Sequence } from "../../src/engine/sequence.ts";
import { loadConfig } from "../../src/model/config.ts";
import { buildLlamaOnnx } from "../../bench/ort/llama-onnx.ts";
import { OrtDecoder } from "../../bench/ort/decoder.ts";
import { safetensorsSource } from "../../bench/ort/weights.ts";
import { engineFor, GREEDY, modelDir, readJsonFile } from "../fixtures/helpers.ts";

const TOL = 2e-2;
ort.env.wasm.numThreads = 1; // CI has 2 cores, and bun test runs its files in one process

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < b.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};

/** One f32 session per model folder (graph built from its safetensors in memory). */
const decoders = new Map<string, Promise<OrtDecoder>>();
function oracleFor(dir: string): Promise<OrtDecoder> {
  let d = decoders.get(dir);
  if (!d) {
    d = (async () => {
      const c = loadConfig(dir);
      const { model } = buildLlamaOnnx(c, safetensorsSource(dir, "f32"), { dtype: "f32", maxPositions: c.maxContext });
      const session = await ort.InferenceSession.create(model, { executionProviders: ["wasm"] });
      return new OrtDecoder(ort, session, c, "f32");
    })();
    decoders.set(dir, d);
  }
  return d;
}

for (const name of ["kvc-nano", "kvc-small"]) {
  const golden = readJsonFile(`${modelDir(name)}/golden.json`);

  test(`${name}: the ONNX graph under onnxruntime gives transformers' first-step logits`, async () => {
    const oracle = await oracleFor(modelDir(name));
    oracle.reset();
    const logits = await oracle.run(golden.prompts[0].prompt_ids);
    // both are f32 math on the same f16 weights: far tighter than kvc's 2e-2
    expect(maxAbsDiff(logits, golden.prompt1_first_step_logits)).toBeLessThan(1e-3);
  }, 120_000);

  describe(`kvc against the onnxruntime oracle: ${name}`, () => {
    for (const p of golden.prompts as any[]) {
      test(`${p.name}: ${golden.n_new_tokens} greedy ids and all first-step logits`, async () => {
        const oracle = await oracleFor(modelDir(name));
        const want = await oracle.greedy(p.prompt_ids, golden.n_new_tokens);
        const engine = await engineFor(modelDir(name));
        const seq = new Sequence(p.prompt_ids, { maxTokens: golden.n_new_tokens, sampling: GREEDY, ignoreEos: true, captureLogits: true });
        engine.add(seq);
        await engine.runUntilIdle();
        expect(maxAbsDiff(seq.firstLogits!, want.firstLogits)).toBeLessThan(TOL);
        expect(seq.output).toEqual(want.ids);
      }, 300_000);
    }
  });
}
