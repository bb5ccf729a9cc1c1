// HF folder loading: dtypes converted on the GPU, shards, fused and padded matrices,
// Qwen2 biases, llama3 RoPE, tied/untied heads, bindings split into row shards, and
// clear errors naming the file and tensor. Logits are checked against a CPU forward.
import { describe, expect, test } from "bun:test";
import { copyFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Engine } from "../../src/engine/engine.ts";
import { Sequence } from "../../src/engine/sequence.ts";
import { loadConfig } from "../../src/model/config.ts";
import { cpuForward, makeTinyModel, writeSafetensors, type TinySpec } from "../fixtures/tiny-model.ts";
import { maxAbsDiff, rand } from "../fixtures/gpu-helpers.ts";
import { GREEDY } from "../fixtures/helpers.ts";

const base: TinySpec = { arch: "LlamaForCausalLM", dtype: "F16", hidden: 32, heads: 4, kvHeads: 2, headDim: 8, ffn: 40, layers: 2, tied: false, shards: 1 };
const llama3 = { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 16 };
const cases: [string, TinySpec][] = [
  ["Llama f16, untied head", base],
  ["Qwen2 f32 with q/k/v bias, tied head, odd FFN", { ...base, arch: "Qwen2ForCausalLM", dtype: "F32", ffn: 44, tied: true }],
  ["Llama bf16, 3 shards, llama3 RoPE, MQA", { ...base, dtype: "BF16", kvHeads: 1, shards: 3, ropeScaling: llama3, hidden: 64, headDim: 16 }],
  ["Mistral f16, bindings split into row shards", { ...base, arch: "MistralForCausalLM" }],
];

describe("tiny random models against a CPU forward", () => {
  for (const [name, spec] of cases) {
    test(name, async () => {
      const m = makeTinyModel(spec);
      const split = spec.arch === "MistralForCausalLM";
      const e = await Engine.load(m.dir, { kvMemory: 4 * 2 ** 20, maxBindingBytes: split ? 4096 : undefined });
      try {
        if (split) expect(e.weights.embed.shards.length).toBeGreaterThan(1);
        const ids = [1, 45, 300, 7, 99, 12, 260, 3, 511, 0, 77, 18, 200, 5, 6, 150, 42, 43, 44, 45];
        const s = new Sequence(ids, { maxTokens: 6, sampling: GREEDY, ignoreEos: true, captureLogits: true });
        e.add(s);
        await e.runUntilIdle();
        expect(maxAbsDiff(s.firstLogits!, cpuForward(m, ids))).toBeLessThan(2e-2);
        // each greedy token is the CPU argmax of the sequence so far
        const seq = [...ids];
        for (const t of s.output.slice(0, 3)) {
          const l = cpuForward(m, seq);
          expect(l[t]).toBeCloseTo(Math.max(...l), 1);
          seq.push(t);
        }
      } finally {
        e.destroy();
        rmSync(m.dir, { recursive: true });
      }
    });
  }
});

describe("clear errors", () => {
  test("unsupported architecture names config.json", () => {
    const m = makeTinyModel(base);
    const c = JSON.parse(require("node:fs").readFileSync(join(m.dir, "config.json"), "utf8"));
    writeFileSync(join(m.dir, "config.json"), JSON.stringify({ ...c, architectures: ["GPT2LMHeadModel"] }));
    expect(() => loadConfig(m.dir)).toThrow(/config\.json: architecture "GPT2LMHeadModel" is not supported/);
    rmSync(m.dir, { recursive: true });
  });

  test("missing files", async () => {
    const m = makeTinyModel(base);
    rmSync(join(m.dir, "model.safetensors"));
    await expect(Engine.load(m.dir)).rejects.toThrow(/missing weights/);
    rmSync(join(m.dir, "config.json"));
    await expect(Engine.load(m.dir)).rejects.toThrow(/missing file .*config\.json/);
    rmSync(m.dir, { recursive: true });
    const s = makeTinyModel({ ...base, shards: 2 });
    rmSync(join(s.dir, "model-00002-of-00002.safetensors"));
    await expect(Engine.load(s.dir)).rejects.toThrow(/missing shard .*model-00002-of-00002\.safetensors/);
    rmSync(s.dir, { recursive: true });
  });

  test("missing tensor and shape mismatch name the tensor and file", async () => {
    const m = makeTinyModel(base);
    writeSafetensors(join(m.dir, "model.safetensors"), [["model.embed_tokens.weight", [512, 32], rand(512 * 32, 1)]], "F16");
    await expect(Engine.load(m.dir)).rejects.toThrow(/tensor model\.layers\.0\.input_layernorm\.weight is missing/);
    writeSafetensors(join(m.dir, "model.safetensors"), [["model.embed_tokens.weight", [512, 16], rand(512 * 16, 1)]], "F16");
    await expect(Engine.load(m.dir)).rejects.toThrow(/model\.safetensors: tensor model\.embed_tokens\.weight has shape \[512,16\], expected \[512,32\]/);
    writeFileSync(join(m.dir, "model.safetensors"), "not a safetensors file at all");
    await expect(Engine.load(m.dir)).rejects.toThrow(/safetensors/);
    rmSync(m.dir, { recursive: true });
  });
});
