// `kvc generate` as a user runs it, under Bun and under Deno.
import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { modelDir, readJsonFile, ROOT } from "../fixtures/helpers.ts";

function run(cmd: string, args: string[]) {
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: "utf8", timeout: 300_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}
const bun = (args: string[]) => run("bun", ["cli/main.ts", ...args]);
const deno = (args: string[]) => run("deno", ["run", "-A", "cli/main.ts", ...args]);

test("stories260K: prompt ids and greedy continuations match the reference", () => {
  const expected = readJsonFile(`${modelDir("stories260K")}/expected.json`);
  for (const c of expected.cases) {
    const r = bun(["generate", "--model", modelDir("stories260K"), "--prompt", c.prompt, "--max-tokens", String(c.generated_ids.length), "--json"]);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out);
    expect(j.prompt_token_ids).toEqual(c.prompt_ids);
    expect(j.token_ids).toEqual(c.generated_ids);
    expect(j.text).toBe(c.generated_text);
  }
});

test("JSON output carries usage and kv_cache figures", () => {
  const r = bun(["generate", "--prompt", "The President", "--max-tokens", "5", "--ignore-eos", "--json"]);
  expect(r.code).toBe(0);
  const j = JSON.parse(r.out);
  expect(j.usage).toEqual({ prompt_tokens: j.prompt_token_ids.length, completion_tokens: 5 });
  expect(j.finish_reason).toBe("length");
  // 4 layers x 2 KV heads, each holding prompt + 4 fed tokens
  const perHead = j.prompt_token_ids.length + 4;
  const blocks = 8 * Math.ceil(perHead / 16);
  expect(j.kv_cache).toEqual({
    blocks_used: blocks,
    block_size: 16,
    tokens_kept: 8 * perHead,
    blocks_uncompressed: blocks,
    tokens_logical: perHead,
    compression_rate: 1,
    evicted_tokens: 0,
  });
});

test("--kv-* flags compress the cache and report what was achieved", () => {
  const prompt = "The President spoke to the Congress about the state of the Union and the war. ".repeat(8);
  const r = bun(["generate", "--prompt", prompt, "--max-tokens", "4", "--ignore-eos", "--json", "--kv-method", "kvcompress", "--kv-rate", "4", "--kv-protected-window", "8"]);
  expect(r.code).toBe(0);
  const k = JSON.parse(r.out).kv_cache;
  expect(k.evicted_tokens).toBeGreaterThan(0);
  expect(k.tokens_kept + k.evicted_tokens).toBe(8 * k.tokens_logical);
  expect(k.blocks_used).toBeLessThan(k.blocks_uncompressed);
  expect(k.compression_rate).toBeCloseTo(k.blocks_uncompressed / k.blocks_used, 6);
  const bad = bun(["generate", "--prompt", "x", "--kv-method", "kvcompress"]);
  expect(bad.code).toBe(1);
  expect(bad.err).toContain("needs a budget");
});

test("chat messages go through the chat template", () => {
  const golden = readJsonFile(`${modelDir("kvc-nano")}/golden.json`);
  const chat = golden.prompts.find((p: any) => p.kind === "chat");
  const r = bun(["generate", "--messages", JSON.stringify(chat.messages), "--max-tokens", "32", "--ignore-eos", "--json"]);
  expect(r.code).toBe(0);
  const j = JSON.parse(r.out);
  expect(j.prompt_token_ids).toEqual(chat.prompt_ids);
  expect(j.token_ids).toEqual(chat.greedy_ids);
});

test("Deno runs the same code: kvc-small golden ids", () => {
  const golden = readJsonFile(`${modelDir("kvc-small")}/golden.json`);
  const p = golden.prompts[1];
  const r = deno(["generate", "--model", modelDir("kvc-small"), "--prompt-ids", p.prompt_ids.join(","), "--max-tokens", "32", "--ignore-eos", "--json"]);
  expect(r.err).not.toContain("kvc:");
  expect(r.code).toBe(0);
  expect(JSON.parse(r.out).token_ids).toEqual(p.greedy_ids);
});

test("streaming text output and bad arguments", () => {
  const r = bun(["generate", "--prompt", "Once upon a time", "--max-tokens", "8"]);
  expect(r.code).toBe(0);
  expect(r.out.trim().length).toBeGreaterThan(0);
  expect(r.err).toContain("adapter:");
  for (const [args, msg] of [
    [["generate"], /exactly one of --prompt/],
    [["generate", "--prompt", "x", "--max-tokens", "0"], /--max-tokens must be an integer >= 1/],
    [["generate", "--prompt", "x", "--top-p", "2"], /--top-p must be in \(0, 1\]/],
    [["generate", "--prompt-ids", "1,x"], /"x" is not a token id/],
    [["generate", "--messages", "{"], /--messages is not valid JSON/],
    [["generate", "--model", "/nonexistent", "--prompt", "x"], /missing file \/nonexistent\/config\.json/],
    [["frobnicate"], /unknown command "frobnicate"/],
  ] as const) {
    const b = bun([...args]);
    expect(b.code).toBe(1);
    expect(b.err).toMatch(msg);
  }
});
