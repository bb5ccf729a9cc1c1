// kvc eval: prompts split where the question starts (text and chat), scoring by the
// first digit run, per-cell summaries, and the CLI end to end on kvc-small (both
// protocols) as a user runs it.
import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { TextTokenizer } from "../../src/model/tokenizer.ts";
import { firstDigits, loadInstances, promptIds, runRetrieval, runRetrievalSweep, summarize } from "../../src/eval/retrieval.ts";
import type { CompressionOptions } from "../../src/cache/compression.ts";
import { engineFor, modelDir, ROOT, SHARED } from "../fixtures/helpers.ts";

const DEV = `${SHARED}/eval/dev`;

test("the context ends where the question starts, for text and chat prompts", () => {
  const tk = TextTokenizer.load(modelDir("kvc-small"));
  for (const file of ["passkey", "multikey", "chat-multikey"]) {
    for (const x of loadInstances(`${DEV}/${file}.jsonl`).slice(0, 3)) {
      const { ids, contextLen } = promptIds(tk, x);
      const tail = tk.decode(ids.slice(contextLen), false);
      expect(tail.trimStart().startsWith(x.question.trimStart())).toBe(true);
      expect(contextLen).toBeLessThan(ids.length);
      // the whole prompt tokenizes as the model would see it in one piece
      const full = typeof x.prompt === "string" ? tk.encode(x.prompt) : tk.encodeChat(x.prompt);
      expect(ids).toEqual(full);
    }
  }
});

test("first digit run and per-cell accuracy", () => {
  expect(firstDigits(" 52586. Remember")).toBe("52586");
  expect(firstDigits("no digits")).toBeNull();
  const r = summarize([
    { id: "a", task: "passkey", contextTokens: 1024, output: "", correct: true, compressionRate: 2 },
    { id: "b", task: "passkey", contextTokens: 1024, output: "", correct: false, compressionRate: 4 },
    { id: "c", task: "multikey", contextTokens: 2048, output: "", correct: true, compressionRate: 3 },
  ]);
  expect(r.overall).toEqual({ accuracy: 2 / 3, n: 3 });
  expect(r.cells).toEqual([
    { task: "multikey", context_tokens: 2048, accuracy: 1, n: 1 },
    { task: "passkey", context_tokens: 1024, accuracy: 0.5, n: 2 },
  ]);
  expect(r.compression_rate_mean).toBe(3);
});

test("a sweep forks one prefill per instance into each setting, with the answers and rates of separate runs", async () => {
  // kvc-nano, both protocols, GPU- and host-planned methods and the full cache
  const engine = await engineFor(`${ROOT}/models/kvc-nano`, { maxSeqs: 8, prefillChunk: 4096 });
  const x = loadInstances(`${DEV}/passkey.jsonl`).slice(0, 1);
  const base = { observationWindow: 8, protectedWindow: 8, compressOnce: true };
  const variants: Partial<CompressionOptions>[] = [
    { method: "none" },
    { ...base, method: "kvcompress", rate: 4 },
    { ...base, method: "snapkv", rate: 8 },
    { ...base, method: "streaming", rate: 4 },
    { ...base, method: "kvcrush", rate: 4 },
  ];
  for (const queryAware of [false, true]) {
    const swept = await runRetrievalSweep(engine, x, { variants, queryAware, maxTokens: 6 });
    for (let v = 0; v < variants.length; v++) {
      const [alone] = await runRetrieval(engine, x, { compression: variants[v], queryAware, maxTokens: 6 });
      expect({ v, queryAware, output: swept[v][0].output, rate: swept[v][0].compressionRate }).toEqual({ v, queryAware, output: alone.output, rate: alone.compressionRate });
    }
    expect(swept[1][0].compressionRate).toBeGreaterThan(3);
  }
  expect(engine.cache.pool.numUsedBlocks).toBe(0);
}, 900_000);

function kvc(args: string[]) {
  const r = spawnSync("bun", ["cli/main.ts", "eval", ...args], { cwd: ROOT, encoding: "utf8", timeout: 900_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test("kvc eval on kvc-small: full cache finds the passkey; compressed runs report their rate", () => {
  const base = ["--model", modelDir("kvc-small"), "--data", `${DEV}/passkey.jsonl`, "--limit", "2", "--json"];
  const full = kvc(base);
  expect(full.code).toBe(0);
  const f = JSON.parse(full.out);
  expect(f.overall).toEqual({ accuracy: 1, n: 2 });
  expect(f.cells).toEqual([{ task: "passkey", context_tokens: 1024, accuracy: 1, n: 2 }]);
  expect(f.compression_rate_mean).toBe(1);
  for (const protocol of [[], ["--query-aware"]]) {
    const c = kvc([...base, ...protocol, "--kv-method", "kvcompress", "--kv-rate", "4", "--kv-observation-window", "8", "--kv-protected-window", "8", "--kv-compress-once"]);
    expect(c.code).toBe(0);
    const j = JSON.parse(c.out);
    expect(j.overall.n).toBe(2);
    expect(j.compression_rate_mean).toBeGreaterThan(3);
  }
  const bad = kvc(["--model", modelDir("kvc-small")]);
  expect(bad.code).toBe(1);
  expect(bad.err).toContain("--data");
}, 900_000);

test("kvc eval --ppl reports perplexity with and without compression", () => {
  const text = `${DEV}/ppl/persuasion_ch19.txt`;
  const run = (extra: string[]) => {
    const r = kvc(["--ppl", text, "--json", ...extra]);
    expect(r.code).toBe(0);
    return JSON.parse(r.out).ppl[0];
  };
  const full = run([]);
  expect(full.tokens).toBe(2048); // kvc-nano's context
  expect(full.perplexity).toBeGreaterThan(5);
  expect(full.perplexity).toBeLessThan(500);
  const small = run(["--kv-method", "kvcompress", "--kv-rate", "8"]);
  expect(small.compression_rate).toBeGreaterThan(4);
  expect(small.perplexity).toBeGreaterThan(full.perplexity * 0.9);
}, 900_000);
