// The peer row: onnxruntime-web's WebGPU backend, the engine transformers.js runs, on
// random f16 weights at a model shape (bench/ort/llama-onnx.ts's graph, built here in
// memory), under Bun through navigator.gpu (bench/ort/gpu.ts: --gpu dawn-node, the Dawn
// kvc runs on by default, or bun-webgpu). --gpu ort-node runs the same graph on onnxruntime-node's native WebGPU
// execution provider instead (its own Dawn; what transformers.js picks under Bun and
// Node; no 4 GiB wasm heap, so the 8B shape fits; KVC_ORT_NODE names the package,
// bench/ort/pack.sh node brings it to the GPU host). Measured as kvc's e2e
// suite measures itself: prefill tokens/s and time to first token per prompt length,
// and single-stream greedy decode tokens/s, with past key/values kept on the GPU
// between runs (preferredOutputLocation "gpu-buffer") and the logits read back each
// step for the argmax, as transformers.js does. One JSON line per figure (suite "ort").
//
//   bun bench/ort/ort-bench.ts [--shape 1b,8b] [--gpu dawn-node|bun-webgpu|ort-node] [--prompt-len 128]
//     [--tokens 256] [--prefill-lens 128,2048] [--deadline-s S] [--out FILE] [--hide-f16]
import { createRequire } from "node:module";
import { parseArgs } from "node:util";
import * as ortWeb from "onnxruntime-web/webgpu";
import type { ModelConfig } from "../../src/model/config.ts";
import { configFromShape, shapeByName } from "../shapes.ts";
import { Deadline, parseList, randomIds, Reporter, round } from "../common.ts";
import { argmax, gpuPastOptions, OrtDecoder } from "./decoder.ts";
import { installGpu, type GpuBinding } from "./gpu.ts";
import { buildLlamaOnnx } from "./llama-onnx.ts";
import { randomSource } from "./weights.ts";

/** onnxruntime-web is a 32-bit wasm build: its heap, which session creation copies initializers through, ends at 4 GiB. */
const WASM_HEAP_BYTES = 4 * 2 ** 30;
const SUITE = "ort";

type OrtModule = typeof ortWeb;
/** onnxruntime-web or onnxruntime-node (the same API, from onnxruntime-common) and its CPU provider */
let ort: OrtModule = ortWeb;
let cpuEp = "wasm";

const paramCount = (c: ModelConfig) => {
  const layer = c.hidden * (c.heads + 2 * c.kvHeads) * c.headDim + c.heads * c.headDim * c.hidden + 3 * c.hidden * c.ffn + 2 * c.hidden;
  return c.vocab * c.hidden * (c.tiedEmbeddings ? 1 : 2) + c.layers * layer + c.hidden;
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

function session(c: ModelConfig, seed: number, maxPositions: number) {
  const m = buildLlamaOnnx(c, randomSource(seed, "f16"), { dtype: "f16", maxPositions, externalAboveBytes: 2 ** 20, blobBytes: 2 ** 30 });
  return ort.InferenceSession.create(m.model, {
    executionProviders: ["webgpu"],
    externalData: m.externalData,
    preferredOutputLocation: gpuPastOptions(c),
    graphOptimizationLevel: "all",
  });
}

/** What an f16 graph does on this device: null if it runs, else onnxruntime's message. */
async function f16Refusal(): Promise<string | null> {
  const c = configFromShape(shapeByName("tiny"), 64);
  try {
    const s = await session(c, 1, 64);
    await new OrtDecoder(ort, s, c, "f16").run([1, 2, 3]);
    await s.release();
    return null;
  } catch (e) {
    return String((e as Error)?.message ?? e).replace(/\s+/g, " ").slice(0, 400);
  }
}

/**
 * The WebGPU backend against the CPU one (wasm, or onnxruntime-node's) on a tiny f32 graph (random weights): greedy
 * ids and the largest logit difference, so a figure from a backend that computes
 * garbage on this device and binding shows itself.
 */
async function checkAgainstCpu(seed: number) {
  const c = configFromShape(shapeByName("tiny"), 64);
  const { model } = buildLlamaOnnx(c, randomSource(seed, "f32"), { dtype: "f32", maxPositions: 64 });
  const run = async (ep: string) => {
    const s = await ort.InferenceSession.create(model, { executionProviders: [ep], preferredOutputLocation: ep === "webgpu" ? gpuPastOptions(c) : undefined });
    const r = await new OrtDecoder(ort, s, c, "f32").greedy(randomIds(12, seed, c.vocab), 6);
    await s.release();
    return r;
  };
  const gpu = await run("webgpu"), cpu = await run(cpuEp);
  let diff = 0;
  for (let i = 0; i < c.vocab; i++) diff = Math.max(diff, Math.abs(gpu.firstLogits[i] - cpu.firstLogits[i]));
  return { ids_match: gpu.ids.join() === cpu.ids.join(), max_abs_diff: diff };
}

async function main() {
  const { values: a } = parseArgs({
    options: {
      shape: { type: "string", default: "1b" },
      gpu: { type: "string", default: "dawn-node" },
      "prompt-len": { type: "string", default: "128" },
      tokens: { type: "string", default: "256" },
      "prefill-lens": { type: "string", default: "128,2048" },
      reps: { type: "string", default: "3" },
      seed: { type: "string", default: "1" },
      "deadline-s": { type: "string" },
      out: { type: "string" },
      "hide-f16": { type: "boolean", default: false },
    },
  });
  if (!["bun-webgpu", "dawn-node", "ort-node"].includes(a.gpu!)) throw new Error(`--gpu takes dawn-node, bun-webgpu or ort-node (got ${a.gpu})`);
  const [promptLen] = parseList(a["prompt-len"], [128], "prompt-len");
  const [tokens] = parseList(a.tokens, [256], "tokens");
  const [reps] = parseList(a.reps, [3], "reps");
  const [seed] = parseList(a.seed, [1], "seed");
  const prefillLens = parseList(a["prefill-lens"], [128, 2048], "prefill-lens");
  const rep = new Reporter(a.out ?? null);
  const deadline = new Deadline(a["deadline-s"] ? Number(a["deadline-s"]) : null);

  const native = a.gpu === "ort-node";
  let g: { binding: string; adapterName: string; shaderF16: boolean | null };
  if (native) {
    ort = createRequire(import.meta.url)(process.env.KVC_ORT_NODE ?? "onnxruntime-node");
    cpuEp = "cpu";
    // its Dawn lives inside the library: the adapter is not ours to see
    g = { binding: "ort-node", adapterName: "onnxruntime-node WebGPU", shaderF16: null };
  } else {
    ort.env.wasm.numThreads = 1; // the GPU does the work; no wasm worker threads under Bun
    g = await installGpu(a.gpu as GpuBinding, a["hide-f16"]);
  }
  ort.env.logLevel = "error";
  rep.setGpu(g.adapterName);
  const engine = native ? `onnxruntime-node ${ort.env.versions.node}` : `onnxruntime-web ${ort.env.versions.web}`;
  const base = { suite: SUITE, engine, binding: g.binding };
  rep.emit({ ...base, test: "env", adapter: g.adapterName, shader_f16: g.shaderF16 });
  rep.emit({ ...base, test: "ort_check", shape: "tiny", ...(await checkAgainstCpu(seed)) });
  const refusal = g.shaderF16 === true ? null : await f16Refusal();

  for (const name of a.shape!.split(",")) {
    const shape = shapeByName(name.trim()).name;
    const maxPositions = Math.max(promptLen + tokens + 8, ...prefillLens);
    const c = configFromShape(shapeByName(shape), maxPositions);
    const bytes = paramCount(c) * 2;
    const skip = (reason: string) => rep.emit({ ...base, test: "ort_decode", shape, skipped: reason });
    if (refusal) {
      skip(`${g.binding}: ${native ? "" : "no shader-f16 on this adapter; "}onnxruntime refuses the f16 graph: ${refusal}`);
      continue;
    }
    if (!native && bytes >= WASM_HEAP_BYTES) {
      skip(`${(bytes / 2 ** 30).toFixed(1)} GiB of f16 weights do not fit onnxruntime-web's 4 GiB wasm32 heap`);
      continue;
    }
    try {
      const t0 = performance.now();
      const s = await session(c, seed, maxPositions);
      rep.emit({ ...base, test: "ort_session", shape, weight_bytes: bytes, build_and_load_ms: round(performance.now() - t0, 0) });
      const dec = new OrtDecoder(ort, s, c, "f16");
      for (const len of prefillLens) {
        // one untimed run compiles this length's pipelines
        const prompt = randomIds(len, seed + len, c.vocab);
        const times: number[] = [];
        for (let r = 0; r <= reps && deadline.fits(2 * (times[0] ?? 0)); r++) {
          dec.reset();
          const t = performance.now();
          await dec.run(prompt);
          if (r > 0) times.push(performance.now() - t);
        }
        if (!times.length) break;
        const ms = median(times);
        rep.emit({ ...base, test: "ort_prefill", shape, prompt_len: len, reps: times.length, ttft_ms: round(ms, 2), prefill_tok_s: round((len / ms) * 1000, 1) });
      }
      if (!deadline.fits(5000)) continue;
      dec.reset();
      let logits = await dec.run(randomIds(promptLen, seed, c.vocab));
      for (let i = 0; i < 4; i++) logits = await dec.run([argmax(logits)]); // decode pipelines compile
      const t = performance.now();
      let n = 0;
      for (; n < tokens && deadline.fits(1000); n++) logits = await dec.run([argmax(logits)]);
      const ms = performance.now() - t;
      rep.emit({ ...base, test: "ort_decode", shape, batch: 1, prompt_len: promptLen, tokens: n, decode_tok_s: round((n / ms) * 1000, 1), ms_per_token: round(ms / n, 3), context_end: dec.length });
      dec.reset();
      await s.release();
    } catch (e) {
      rep.emit({ ...base, test: "ort_decode", shape, error: String((e as Error)?.message ?? e).slice(0, 600) });
    }
  }
}

await main();
