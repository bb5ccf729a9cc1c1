// n > 1 choices and prefix caching over real HTTP through the openai SDK, against a
// `kvc serve` process under Bun and under Deno: n choices whole and streamed (each
// chunk carries its choice's index, usage counts the prompt once), a repeated long
// prompt reports cached_tokens with the same greedy text and moves the vLLM prefix
// cache counters, kv_compression.cache_prefix reuses a compressed system prompt, bad
// n values are 400s, and no KV block stays held.
import { describe, expect, test } from "bun:test";
import OpenAI from "openai";
import { metric, postJson, RUNTIMES, sdkServer, until } from "../fixtures/server-helpers.ts";

const MODEL = "kvc-nano";
const LONG =
  "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife. However little known the feelings or views of such a man may be on his first entering a neighbourhood, this truth is so well fixed in the minds of the surrounding families, that he is considered the rightful property of some one or other of their daughters.";
// the SDK sends fields it does not know as they are
const extra = (o: object) => o as {};

describe.each(RUNTIMES)("%s", (runtime) => {
  const sdk = sdkServer(runtime);

  test("n = 3: whole and streamed, one choice per index, the prompt counted once", async () => {
    const ask = { model: MODEL, prompt: LONG, max_tokens: 8, temperature: 1, seed: 11, n: 3, ...extra({ ignore_eos: true }) };
    const whole = await sdk.client.completions.create(ask);
    expect(whole.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    for (const c of whole.choices) expect(c.finish_reason).toBe("length");
    // each choice samples with its own seed (seed + index)
    expect(new Set(whole.choices.map((c) => c.text)).size).toBeGreaterThan(1);
    expect(whole.usage!.completion_tokens).toBe(24);
    const single = await sdk.client.completions.create({ ...ask, n: 1, max_tokens: 1 });
    expect(whole.usage!.prompt_tokens).toBe(single.usage!.prompt_tokens);

    const stream = await sdk.client.completions.create({ ...ask, stream: true, stream_options: { include_usage: true } });
    const texts = ["", "", ""];
    const finishes: (string | null)[] = [null, null, null];
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      for (const c of chunk.choices) {
        texts[c.index] += c.text;
        if (c.finish_reason) finishes[c.index] = c.finish_reason;
      }
    }
    expect(finishes).toEqual(["length", "length", "length"]);
    expect(texts).toEqual(whole.choices.map((c) => c.text)); // seeded: the same choices
    expect(usage!.completion_tokens).toBe(24);

    const chat = await sdk.client.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: LONG }], max_tokens: 4, n: 2, temperature: 0, ...extra({ ignore_eos: true }) });
    expect(chat.choices.map((c) => c.index)).toEqual([0, 1]);
    expect(chat.choices[0].message.content).toBe(chat.choices[1].message.content); // greedy: the same answer
  }, 240_000);

  test("a repeated prompt is served from the prefix cache: cached_tokens, same greedy text, vLLM counters", async () => {
    const queries0 = await metric(sdk.server.url, "vllm:prefix_cache_queries_total");
    const hits0 = await metric(sdk.server.url, "vllm:prefix_cache_hits_total");
    const ask = { model: MODEL, prompt: `${LONG} And so`, max_tokens: 10, temperature: 0, ...extra({ ignore_eos: true }) };
    const cold = await sdk.client.completions.create(ask);
    const warm = await sdk.client.completions.create(ask);
    const promptTokens = cold.usage!.prompt_tokens;
    expect((cold.usage as any).prompt_tokens_details.cached_tokens).toBe(0);
    // every full block but the one holding the last prompt token
    const cached = Math.floor((promptTokens - 1) / 16) * 16;
    expect((warm.usage as any).prompt_tokens_details.cached_tokens).toBe(cached);
    expect(warm.choices[0].text).toBe(cold.choices[0].text);
    expect(await metric(sdk.server.url, "vllm:prefix_cache_queries_total")).toBe(queries0 + 2 * promptTokens);
    expect(await metric(sdk.server.url, "vllm:prefix_cache_hits_total")).toBe(hits0 + cached);
    expect(await metric(sdk.server.url, "kvc_kv_blocks_cached")).toBeGreaterThan(0);
    expect(await metric(sdk.server.url, "kvc_kv_blocks_used")).toBe(0);
  }, 120_000);

  test("kv_compression.cache_prefix: a compressed system prompt is reused by the next question", async () => {
    const ask = (question: string) =>
      sdk.client.chat.completions.create({
        model: MODEL,
        messages: [{ role: "system", content: LONG }, { role: "user", content: question }],
        max_tokens: 6,
        temperature: 0,
        ...extra({ kv_compression: { method: "snapkv", rate: 2, cache_prefix: true } }),
      });
    const first = await ask("Who is in want of a wife?");
    const second = await ask("What is universally acknowledged?");
    const u1 = first.usage as any, u2 = second.usage as any;
    expect(u2.prompt_tokens_details.cached_tokens).toBeGreaterThan(u1.prompt_tokens_details.cached_tokens);
    expect(u2.prompt_tokens_details.cached_tokens % 16).toBe(0);
    expect(u2.kv_cache.evicted_tokens).toBeGreaterThan(0);
    const res = await postJson(`${sdk.server.url}/v1/completions`, { prompt: LONG, kv_compression: { method: "snapkv", rate: 2, cache_prefix: true } });
    expect(res.status).toBe(400);
    expect((await res.json()).error.param).toBe("kv_compression.cache_prefix");
  }, 120_000);

  test("n out of range is a 400 naming it; nothing stays held", async () => {
    for (const n of [0, -1, 1.5, "2", 129, 1e9]) {
      const res = await postJson(`${sdk.server.url}/v1/chat/completions`, { messages: [{ role: "user", content: "Hi" }], max_tokens: 2, n });
      expect(res.status).toBe(400);
      expect((await res.json()).error.param).toBe("n");
    }
    const res = await postJson(`${sdk.server.url}/v1/completions`, { prompt: "Hi", max_tokens: 2, n: 65 });
    expect(res.status).toBe(400);
    expect((await res.json()).error.message).toMatch(/n may be at most 64/);
    // a streamed n = 4 request left midway frees every choice's blocks
    const ac = new AbortController();
    const r = await postJson(`${sdk.server.url}/v1/completions`, { prompt: LONG, max_tokens: 200, n: 4, stream: true, ignore_eos: true }, { signal: ac.signal });
    const reader = r.body!.getReader();
    await reader.read();
    ac.abort();
    expect(await until(() => metric(sdk.server.url, "kvc_kv_blocks_used"), (x) => x === 0, 10_000)).toBe(0);
  }, 120_000);
});
