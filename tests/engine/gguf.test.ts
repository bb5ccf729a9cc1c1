// GGUF reading: clear errors for broken files before anything reaches a GPU, the
// blueprint and tokenizer from the metadata against the HF folder they were made from.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig, ropeInvFreq } from "../../src/model/config.ts";
import { readGguf, writeGguf, type GgufTensorData } from "../../src/model/gguf-file.ts";
import { ggufConfig } from "../../src/model/gguf-model.ts";
import { ggufPath, openModel } from "../../src/model/model-files.ts";
import { quantize } from "../../src/model/quant.ts";
import { Engine } from "../../src/engine/engine.ts";
import { Sequence } from "../../src/engine/sequence.ts";
import { maxAbsDiff, rand } from "../fixtures/gpu-helpers.ts";
import { ggufFixture } from "../fixtures/gguf-fixtures.ts";
import { GREEDY, modelDir, readJsonFile } from "../fixtures/helpers.ts";

const tmp = mkdtempSync(join(tmpdir(), "kvc-gguf-"));
const f32bytes = (x: Float32Array) => new Uint8Array(x.buffer);

/** A two-tensor file: a Q8_0 [4, 64] matrix, then an F32 [64] vector. */
function smallFile(name: string): string {
  const file = join(tmp, name);
  const tensors: GgufTensorData[] = [
    { name: "blk.0.attn_q.weight", type: "q8_0", shape: [4, 64], data: quantize("q8_0", rand(256, 1)) },
    { name: "blk.0.attn_norm.weight", type: "F32", shape: [64], data: f32bytes(rand(64, 2)) },
  ];
  writeGguf(file, [["general.architecture", { type: "string", value: "llama" }]], tensors);
  return file;
}

/** Rewrites the u32 `at` bytes after tensor `name` in the tensor table (0: n_dims, 4: ne0, 12: ne1, 20: the type). */
function patchTensorInfo(file: string, name: string, at: number, value: number) {
  const b = readFileSync(file);
  const i = b.indexOf(Buffer.from(name)) + name.length + at;
  b.writeUInt32LE(value, i);
  writeFileSync(file, b);
}

describe("broken GGUF files fail with a message naming the problem", () => {
  test("bad magic", async () => {
    const file = join(tmp, "bad.gguf");
    writeFileSync(file, Buffer.concat([Buffer.from("GGML"), readFileSync(smallFile("ok.gguf")).subarray(4)]));
    await expect(readGguf(file)).rejects.toThrow(/not a GGUF file \(magic "GGML"/);
  });
  test("truncated inside the tensor data", async () => {
    const file = smallFile("cut.gguf");
    const b = readFileSync(file);
    writeFileSync(file, b.subarray(0, b.length - 40));
    await expect(readGguf(file)).rejects.toThrow(/tensor blk\.0\.attn_norm\.weight .* runs past the end of the file .*truncated/);
  });
  test("truncated inside the header", async () => {
    const file = smallFile("head.gguf");
    writeFileSync(file, readFileSync(file).subarray(0, 60));
    await expect(readGguf(file)).rejects.toThrow(/GGUF header is truncated or corrupt/);
  });
  test("a tensor type kvc does not read", async () => {
    const file = smallFile("q5k.gguf");
    patchTensorInfo(file, "blk.0.attn_q.weight", 4 + 16, 13); // after n_dims and two u64 dims: the type
    await expect(readGguf(file)).rejects.toThrow(/tensor blk\.0\.attn_q\.weight has type Q5_K; kvc reads F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K/);
  });
  test("a tensor larger than the room it has", async () => {
    const file = smallFile("big.gguf");
    patchTensorInfo(file, "blk.0.attn_q.weight", 4 + 8, 5); // 5 rows where 4 were written
    await expect(readGguf(file)).rejects.toThrow(/blk\.0\.attn_q\.weight \(Q8_0 \[5,64\]\) needs 340 bytes .* its size does not match its shape/);
  });
  test("rows that are not whole blocks", async () => {
    const file = smallFile("rows.gguf");
    patchTensorInfo(file, "blk.0.attn_q.weight", 4, 48);
    await expect(readGguf(file)).rejects.toThrow(/rows of 48 values, not whole Q8_0 blocks of 32/);
  });
  test("openModel reports them before a GPU is touched, and names a missing architecture", async () => {
    await expect(openModel(smallFile("noarch.gguf"))).rejects.toThrow(/tokenizer|head_count|embedding_length/);
    const file = join(tmp, "gpt2.gguf");
    writeGguf(file, [["general.architecture", { type: "string", value: "gpt2" }]], []);
    await expect(openModel(file)).rejects.toThrow(/architecture "gpt2" is not supported; kvc runs GGUF llama, mistral, qwen2/);
  });
});

describe("GGUF fixtures against their HF folders", () => {
  test("a folder with one GGUF file and no safetensors names that file", () => {
    const file = ggufFixture("kvc-nano", "q8_0");
    expect(ggufPath(file)).toBe(file);
    expect(ggufPath(modelDir("kvc-nano"))).toBeNull();
  });
  for (const name of ["kvc-nano", "kvc-small", "stories260K"]) {
    test(`${name}: blueprint from the metadata`, async () => {
      const g = await readGguf(ggufFixture(name, "q8_0"));
      const want = loadConfig(modelDir(name));
      const got = ggufConfig(g);
      for (const k of ["hidden", "layers", "heads", "kvHeads", "headDim", "ffn", "vocab", "maxContext", "tiedEmbeddings", "bosId", "qkvBias"] as const) expect(got[k], k).toEqual(want[k]);
      expect(got.eosIds).toContain(want.eosIds[0]);
      expect(Math.abs(got.normEps - want.normEps)).toBeLessThan(1e-9);
      expect(Array.from(got.invFreq)).toEqual(Array.from(want.invFreq));
    });
  }
  test("kvc-small and kvc-nano: BPE tokenizer and chat template from the metadata encode the golden prompts", async () => {
    for (const name of ["kvc-nano", "kvc-small"]) {
      const m = await openModel(ggufFixture(name, "q4_0"));
      const golden = readJsonFile(`${modelDir(name)}/golden.json`);
      for (const p of golden.prompts) {
        const ids = p.kind === "chat" ? m.tokenizer.encodeChat(p.messages) : m.tokenizer.encode(p.text);
        expect(ids, `${name} ${p.name}`).toEqual(p.prompt_ids);
        expect(m.tokenizer.decode(p.greedy_ids, false)).toBe(p.greedy_text);
      }
    }
  });
  test("stories260K: SentencePiece scores become the folder's merges", async () => {
    const m = await openModel(ggufFixture("stories260K", "f16"));
    const expected = readJsonFile(`${modelDir("stories260K")}/expected.json`);
    for (const c of expected.cases) {
      expect(m.tokenizer.encode(c.prompt)).toEqual(c.prompt_ids);
      expect(m.tokenizer.decode(c.generated_ids)).toBe(c.generated_text);
    }
    expect(m.tokenizer.hasChatTemplate).toBe(false);
  });
  test("llama 3 rope_freqs divide the rotary frequencies", async () => {
    const file = join(tmp, "rope.gguf");
    const D = 64, theta = 500000;
    const scaling = { rope_type: "llama3", factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 };
    const plain = ropeInvFreq(D, theta, null), scaled = ropeInvFreq(D, theta, scaling);
    const factors = plain.map((f, i) => f / scaled[i]);
    const n = (value: number) => ({ type: "u32" as const, value });
    writeGguf(file, [
      ["general.architecture", { type: "string", value: "llama" }],
      ["llama.embedding_length", n(128)], ["llama.block_count", n(1)], ["llama.attention.head_count", n(2)],
      ["llama.feed_forward_length", n(256)], ["llama.vocab_size", n(256)], ["llama.rope.freq_base", { type: "f32", value: theta }],
    ], [{ name: "rope_freqs.weight", type: "F32", shape: [D / 2], data: f32bytes(factors) }]);
    const got = ggufConfig(await readGguf(file)).invFreq;
    for (let i = 0; i < D / 2; i++) expect(got[i]).toBeCloseTo(scaled[i], 6);
  });
});

describe("on-load quantization", () => {
  test("kvc-nano --quantize q8_0 answers as its Q8_0 GGUF file (same blocks, made on the GPU)", async () => {
    const golden = readJsonFile(`${modelDir("kvc-nano")}/golden.json`);
    const prompt: number[] = golden.prompts[0].prompt_ids;
    const run = async (e: Engine) => {
      try {
        const s = new Sequence(prompt, { maxTokens: 16, sampling: GREEDY, ignoreEos: true, captureLogits: true });
        e.add(s);
        await e.runUntilIdle();
        return { out: s.output, logits: s.firstLogits!, quants: new Set(e.weights.layers[0].qkv.shards.map((x) => x.quant)), bytes: e.weights.bytes };
      } finally {
        e.destroy();
      }
    };
    const onLoad = await run(await Engine.load(modelDir("kvc-nano"), { kvMemory: 16 * 2 ** 20, quantize: "q8_0" }));
    const file = await run(await Engine.load(ggufFixture("kvc-nano", "q8_0"), { kvMemory: 16 * 2 ** 20 }));
    expect([...onLoad.quants]).toEqual(["q8_0"]);
    expect(onLoad.bytes).toBe(file.bytes);
    expect(onLoad.out).toEqual(file.out);
    // blocks may differ by one step where a weight sits at a rounding midpoint (tests/quant.test.ts)
    expect(maxAbsDiff(onLoad.logits, file.logits)).toBeLessThan(5e-2); // 0.03 seen
  }, 300_000);
});
