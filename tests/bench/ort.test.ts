// The onnxruntime-web peer benchmark (bench/ort/ort-bench.ts) at the tiny shape on
// lavapipe: through dawn.node its WebGPU backend agrees with its wasm backend and every
// figure is recorded; through bun-webgpu without shader-f16 it gets onnxruntime's own
// refusal; the report puts the figures beside kvc's.
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import * as ort from "onnxruntime-web";
import { markdown, readRecords, summarize } from "../../bench/report.ts";
import { OrtDecoder } from "../../bench/ort/decoder.ts";
import { buildLlamaOnnx } from "../../bench/ort/llama-onnx.ts";
import { randomSource } from "../../bench/ort/weights.ts";
import { configFromShape, shapeByName } from "../../bench/shapes.ts";
import { ROOT } from "../fixtures/helpers.ts";

function ortBench(...flags: string[]) {
  const r = spawnSync("bun", ["bench/ort/ort-bench.ts", "--shape", "tiny", "--prefill-lens", "16", "--prompt-len", "4", "--tokens", "4", "--reps", "1", ...flags],
    { cwd: ROOT, encoding: "utf8", timeout: 280_000 });
  expect(r.status).toBe(0);
  return readRecords(r.stdout);
}
const one = (recs: any[], test: string) => recs.filter((r) => r.test === test);

describe("onnxruntime-web peer benchmark", () => {
  test("weights in external blobs (how 1B and 8B travel) give the model that inline weights give", async () => {
    ort.env.wasm.numThreads = 1;
    const c = configFromShape(shapeByName("tiny"), 64);
    const opts = { dtype: "f32" as const, maxPositions: 64 };
    const inline = buildLlamaOnnx(c, randomSource(3, "f32"), opts);
    const split = buildLlamaOnnx(c, randomSource(3, "f32"), { ...opts, externalAboveBytes: 2 ** 12, blobBytes: 2 ** 16, modelName: "m.onnx" });
    expect(inline.externalData).toHaveLength(0);
    expect(split.externalData.map((b) => b.path).slice(0, 2)).toEqual(["m.onnx_data", "m.onnx_data_1"]); // transformers.js's names
    const run = async (m: typeof inline) =>
      new OrtDecoder(ort, await ort.InferenceSession.create(m.model, { externalData: m.externalData }), c, "f32").greedy([5, 6, 7], 4);
    const [a, b] = [await run(inline), await run(split)];
    expect(b.ids).toEqual(a.ids);
    expect(Array.from(b.firstLogits)).toEqual(Array.from(a.firstLogits));
  });

  test("records prefill and decode at the tiny shape, after checking WebGPU against wasm", () => {
    const recs = ortBench("--gpu", "dawn-node");
    expect(one(recs, "env")[0]).toMatchObject({ suite: "ort", binding: "dawn-node", engine: "onnxruntime-web 1.30.0" });
    const [check] = one(recs, "ort_check");
    expect(check.ids_match).toBe(true);
    expect(check.max_abs_diff).toBeLessThan(1e-3);
    const [prefill] = one(recs, "ort_prefill");
    expect(prefill).toMatchObject({ shape: "tiny", prompt_len: 16, reps: 1 });
    expect(prefill.prefill_tok_s).toBeGreaterThan(0);
    const [decode] = one(recs, "ort_decode");
    expect(decode).toMatchObject({ shape: "tiny", batch: 1, tokens: 4, prompt_len: 4, context_end: 4 + 4 + 4 });
    expect(decode.decode_tok_s).toBeGreaterThan(0);
  }, 300_000);

  test("without shader-f16 (bun-webgpu on NVIDIA) the f16 shape is skipped with onnxruntime's message", () => {
    const recs = ortBench("--gpu", "bun-webgpu", "--hide-f16");
    expect(one(recs, "env")[0].shader_f16).toBe(false);
    expect(one(recs, "ort_check")[0].ids_match).toBe(true); // f32 still runs
    const [skip] = one(recs, "ort_decode");
    expect(skip.skipped).toContain("requires f16 but the device does not support it");
    expect(one(recs, "ort_prefill")).toHaveLength(0);
  }, 300_000);

  test("the report puts onnxruntime-web beside kvc and names the summary key", () => {
    const base = { runtime: "bun", gpu: "G", commit: "c", suite: "ort", binding: "dawn-node", engine: "onnxruntime-web 1.30.0" };
    const native = { ...base, binding: "ort-node", engine: "onnxruntime-node 1.30.0" };
    const recs = [
      { ...base, suite: "e2e", test: "single_stream", shape: "llama-3.2-1b", lookahead: 4, decode_tok_s: 750 },
      { ...base, suite: "e2e", test: "prefill", shape: "llama-3.2-1b", prompt_len: 2048, prefill_tok_s: 12000 },
      { ...base, suite: "e2e", test: "single_stream", shape: "llama-3.1-8b", lookahead: 4, decode_tok_s: 188 },
      { ...base, test: "ort_prefill", shape: "llama-3.2-1b", prompt_len: 2048, prefill_tok_s: 4000, ttft_ms: 512 },
      { ...base, test: "ort_decode", shape: "llama-3.2-1b", prompt_len: 128, tokens: 256, decode_tok_s: 150 },
      { ...base, test: "ort_decode", shape: "llama-3.1-8b", skipped: "16.1 GiB of f16 weights do not fit" },
      { ...native, test: "ort_decode", shape: "llama-3.1-8b", prompt_len: 128, tokens: 256, decode_tok_s: 40 },
    ];
    const s = summarize(recs);
    expect(s.ort_web_1b_tok_s).toBe(150);
    expect(s.ort_web_1b_prefill_tok_s).toBe(4000);
    expect(s.ort_web_8b_tok_s).toBeNull(); // onnxruntime-node's figure is not onnxruntime-web's
    expect(s.ort_node_8b_tok_s).toBe(40);
    expect(s.decode_1b_tok_s).toBe(750); // kvc's own figure is not taken from the peer's records
    const md = markdown(recs);
    expect(md).toContain("| llama-3.2-1b | decode | onnxruntime-web | 750 | 150 | 5.00x |");
    expect(md).toContain("| llama-3.2-1b | prefill 2048 | onnxruntime-web | 12000 | 4000 | 3.00x |");
    expect(md).toContain("| llama-3.1-8b | decode | onnxruntime-node | 188 | 40 | 4.70x |");
    expect(md).toContain("16.1 GiB of f16 weights do not fit");
  });
});
