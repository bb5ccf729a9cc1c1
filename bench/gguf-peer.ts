// kvc beside llama.cpp on the same GGUF files: random weights at the 1B and 8B shapes
// (bench/random-gguf.ts), single-stream decode tokens/s (batch 1) and prefill tokens/s,
// each engine in turn on the same GPU. llama.cpp runs through node-llama-cpp's prebuilt
// CUDA build (tools/llamacpp; --llamacpp-gpu vulkan for its Vulkan build), with every
// layer on the GPU, flash attention, one sequence; its decode time per token includes
// node-llama-cpp's JavaScript around each llama_decode (measured separately below as
// a host-only figure is not possible: it is part of what a Node user of llama.cpp gets).
//
//   bun bench/gguf-peer.ts [--shapes 1b,8b] [--quants q4_k_m,q8_0] [--dir /tmp/kvc-gguf]
//     [--prompt-len 128] [--tokens 256] [--prefill-lens 512,2048] [--engines kvc,llamacpp]
//     [--llamacpp-gpu cuda|vulkan|cpu] [--out FILE]
// Every figure is one JSON line (suite "gguf", tests gguf_decode and gguf_prefill);
// bench/report.ts folds them into
// summary.json (decode_8b_q4km_tok_s, decode_8b_q8_tok_s, llamacpp_8b_q4km_tok_s).
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Engine } from "../src/engine/engine.ts";
import { shapeByName } from "./shapes.ts";
import { Deadline, kvBytesFor, parseList, randomIds, Reporter, round, type BenchContext } from "./common.ts";
import { runTimed, seqOf, warmUp } from "./e2e.ts";
import { writeRandomGguf, type PeerQuant } from "./random-gguf.ts";

const { values: a } = parseArgs({
  options: {
    shapes: { type: "string", default: "1b,8b" },
    quants: { type: "string", default: "q4_k_m,q8_0" },
    dir: { type: "string", default: "/tmp/kvc-gguf" },
    "prompt-len": { type: "string", default: "128" },
    tokens: { type: "string", default: "256" },
    "prefill-lens": { type: "string", default: "512,2048" },
    engines: { type: "string", default: "kvc,llamacpp" },
    "llamacpp-gpu": { type: "string", default: "cuda" },
    out: { type: "string" },
  },
});
const promptLen = Number(a["prompt-len"]), tokens = Number(a.tokens);
const prefillLens = parseList(a["prefill-lens"], [512, 2048], "prefill-lens");
const engines = a.engines!.split(",");
const rep = new Reporter(a.out ?? null);
const ctx: BenchContext = { rep, deadline: new Deadline(null), seed: 1 };
mkdirSync(a.dir!, { recursive: true });

type Common = { suite: string; shape: string; quant: string };

async function kvcRun(file: string, common: Common) {
  const longest = Math.max(promptLen + tokens, ...prefillLens) + 64;
  const t0 = performance.now();
  const e = await Engine.load(file, { kvMemory: 2 ** 30, maxSeqs: 4, log: (m) => rep.log(`kvc: ${m}`) });
  rep.setGpu(e.gpu.adapterName);
  rep.log(`kvc: loaded ${file} in ${(performance.now() - t0).toFixed(0)} ms, ${(e.weights.bytes / 2 ** 30).toFixed(2)} GiB on the GPU`);
  if (e.cfg.maxContext < longest || kvBytesFor(e.cfg, 1, longest) > 2 ** 30) throw new Error("the KV pool does not hold the longest run");
  try {
    await warmUp(e, ctx);
    const r = await runTimed(e, [seqOf(e, randomIds(promptLen, 10, e.cfg.vocab), tokens)]);
    rep.emit({ ...common, engine: "kvc", test: "gguf_decode", prompt_len: promptLen, tokens, lookahead: e.opts.lookahead, decode_tok_s: round((1000 * r.decoded) / r.decodeMs, 2), ttft_ms: round(r.ttftMs, 2) });
    for (const P of prefillLens) {
      const p = await runTimed(e, [seqOf(e, randomIds(P, P, e.cfg.vocab), 2)]);
      rep.emit({ ...common, engine: "kvc", test: "gguf_prefill", prompt_len: P, ttft_ms: round(p.ttftMs, 2), prefill_tok_s: round((1000 * P) / p.ttftMs, 1) });
    }
  } finally {
    e.destroy();
  }
}

async function llamaCppRun(file: string, common: Common, vocab: number) {
  const { getLlama, LlamaLogLevel } = await import("../tools/llamacpp/node_modules/node-llama-cpp/dist/index.js");
  const gpu = a["llamacpp-gpu"] as "cuda" | "vulkan" | "cpu";
  const llama = await getLlama({ gpu: gpu === "cpu" ? false : gpu, build: "never", logLevel: LlamaLogLevel.warn });
  const t0 = performance.now();
  const model = await llama.loadModel({ modelPath: file, gpuLayers: "max" });
  const context = await model.createContext({ contextSize: Math.max(promptLen + tokens, ...prefillLens) + 64, sequences: 1, batchSize: 512, flashAttention: true });
  rep.log(`llama.cpp (${gpu}): loaded in ${(performance.now() - t0).toFixed(0)} ms, ${llama.gpu} ${(await llama.getGpuDeviceNames()).join(", ")}`);
  const seq = context.getSequence();
  const engine = `llamacpp-${gpu}`;
  try {
    const decode = async (prompt: number[], n: number) => {
      await seq.clearHistory();
      const times: number[] = [];
      for await (const _ of seq.evaluate(prompt as any, { temperature: 0, yieldEogToken: true })) {
        times.push(performance.now());
        if (times.length >= n) break;
      }
      return times;
    };
    await decode(randomIds(40, 1, vocab), 16); // warm-up
    const t = await decode(randomIds(promptLen, 10, vocab), tokens);
    rep.emit({ ...common, engine, test: "gguf_decode", prompt_len: promptLen, tokens, decode_tok_s: round((1000 * (t.length - 1)) / (t[t.length - 1] - t[0]), 2) });
    for (const P of prefillLens) {
      await seq.clearHistory();
      const p0 = performance.now();
      await seq.evaluateWithoutGeneratingNewTokens(randomIds(P, P, vocab) as any);
      const ms = performance.now() - p0;
      rep.emit({ ...common, engine, test: "gguf_prefill", prompt_len: P, prefill_ms: round(ms, 2), prefill_tok_s: round((1000 * P) / ms, 1) });
    }
  } finally {
    await context.dispose();
    await model.dispose();
    await llama.dispose();
  }
}

for (const shapeName of a.shapes!.split(",")) {
  const shape = shapeByName(shapeName);
  for (const quant of a.quants!.split(",") as PeerQuant[]) {
    const file = join(a.dir!, `${shape.name}-${quant}.gguf`);
    const common: Common = { suite: "gguf", shape: shape.name, quant };
    if (!existsSync(file)) {
      const t0 = performance.now();
      writeRandomGguf(shape, quant, file);
      rep.log(`wrote ${file} in ${(performance.now() - t0).toFixed(0)} ms`);
    }
    for (const engine of engines) {
      try {
        if (engine === "kvc") await kvcRun(file, common);
        else if (engine === "llamacpp") await llamaCppRun(file, common, shape.vocab);
        else throw new Error(`unknown engine ${engine} (kvc, llamacpp)`);
      } catch (e) {
        rep.emit({ ...common, engine, test: "error", error: String((e as Error).stack ?? e) });
      }
    }
  }
}
process.exit(0);
