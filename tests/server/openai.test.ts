// `kvc serve` through the openai npm SDK over real HTTP on kvc-nano, as a server
// process under Bun and under Deno: completions and chat, streamed and whole,
// include_usage, stop strings, seeds, token-id prompts, and the chat golden ids
// from transformers.
import { describe, expect, test } from "bun:test";
import OpenAI from "openai";
import { TextTokenizer } from "../../src/model/tokenizer.ts";
import { hasShared, modelDir, readJsonFile } from "../fixtures/helpers.ts";
import { metric, NANO, RUNTIMES, sdkServer } from "../fixtures/server-helpers.ts";

const MODEL = "kvc-nano";
const PROMPT = "The President of the United States";
const tokenizer = TextTokenizer.load(NANO);

describe.each(RUNTIMES)("%s", (runtime) => {
  const sdk = sdkServer(runtime);

  // the SDK sends fields it does not know as they are
  const extra = (o: object) => o as {};

  test("completions: whole and streamed give the same greedy text, with usage", async () => {
    const whole = await sdk.client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 12, temperature: 0, ...extra({ ignore_eos: true }) });
    expect(whole.id).toMatch(/^cmpl-/);
    expect(whole.object).toBe("text_completion");
    expect(whole.model).toBe(MODEL);
    expect(Math.abs(whole.created - Date.now() / 1000)).toBeLessThan(60);
    expect(whole.choices).toHaveLength(1);
    expect(whole.choices[0].finish_reason).toBe("length");
    expect(whole.choices[0].text.length).toBeGreaterThan(0);
    const promptTokens = tokenizer.encode(PROMPT).length;
    expect(whole.usage).toMatchObject({ prompt_tokens: promptTokens, completion_tokens: 12, total_tokens: promptTokens + 12 });
    // 4 layers x 2 KV heads, each holding prompt + 11 fed tokens, nothing evicted
    const perHead = promptTokens + 11;
    expect((whole.usage as any).kv_cache).toEqual({ blocks_used: 8 * Math.ceil(perHead / 16), blocks_uncompressed: 8 * Math.ceil(perHead / 16), compression_rate: 1, evicted_tokens: 0 });

    const stream = await sdk.client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 12, temperature: 0, stream: true, stream_options: { include_usage: true }, ...extra({ ignore_eos: true }) });
    let text = "";
    const chunks: OpenAI.Completion[] = [];
    for await (const chunk of stream) {
      chunks.push(chunk);
      text += chunk.choices[0]?.text ?? "";
    }
    expect(text).toBe(whole.choices[0].text);
    const last = chunks[chunks.length - 1];
    expect(last.choices).toEqual([]);
    expect(last.usage).toMatchObject({ prompt_tokens: promptTokens, completion_tokens: 12 });
    expect(chunks[chunks.length - 2].choices[0].finish_reason).toBe("length");
    expect(chunks.slice(0, -1).every((c) => c.usage === null && c.id === last.id && c.object === "text_completion")).toBe(true);
  });

  test("chat: whole and streamed agree; the first chunk carries the role", async () => {
    const messages = [{ role: "user" as const, content: "Tell me about the Union." }];
    const whole = await sdk.client.chat.completions.create({ model: MODEL, messages, max_tokens: 16, temperature: 0 });
    expect(whole.id).toMatch(/^chatcmpl-/);
    expect(whole.object).toBe("chat.completion");
    expect(whole.choices[0].message.role).toBe("assistant");
    expect(["stop", "length"]).toContain(whole.choices[0].finish_reason);
    const stream = await sdk.client.chat.completions.create({ model: MODEL, messages, max_tokens: 16, temperature: 0, stream: true });
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks[0].choices[0].delta.role).toBe("assistant");
    expect(chunks.every((c) => c.object === "chat.completion.chunk" && c.id === chunks[0].id)).toBe(true);
    expect(chunks.map((c) => c.choices[0].delta.content ?? "").join("")).toBe(whole.choices[0].message.content!);
    expect(chunks[chunks.length - 1].choices[0].finish_reason).toBe(whole.choices[0].finish_reason);
    expect(chunks.every((c) => !("usage" in c) || c.usage == null)).toBe(true);
  });

  test.skipIf(!hasShared)("chat answers equal the transformers golden ids", async () => {
    const golden = readJsonFile(`${modelDir("kvc-nano")}/golden.json`);
    const chat = golden.prompts.find((p: any) => p.kind === "chat");
    const r = await sdk.client.chat.completions.create({ model: MODEL, messages: chat.messages, max_completion_tokens: 32, temperature: 0, ...extra({ ignore_eos: true }) });
    expect(r.usage!.prompt_tokens).toBe(chat.prompt_ids.length);
    expect(r.choices[0].message.content).toBe(tokenizer.decode(chat.greedy_ids.slice(0, 32)));
  });

  test("stop strings end the text before them, also when split across tokens", async () => {
    const full = (await sdk.client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 24, temperature: 0, ...extra({ ignore_eos: true }) })).choices[0].text;
    // a stop that starts inside one token and ends inside a later one
    const tk = tokenizer;
    const ids = tk.encode(full, false);
    const cut = tk.decode(ids.slice(0, 6)).length;
    const stop = full.slice(cut - 2, cut + 3);
    expect(stop.length).toBe(5);
    const before = full.slice(0, full.indexOf(stop));
    const whole = await sdk.client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 24, temperature: 0, stop: ["never matches", stop] });
    expect(whole.choices[0].text).toBe(before);
    expect(whole.choices[0].finish_reason).toBe("stop");
    expect(whole.usage!.completion_tokens).toBeLessThan(24);
    const stream = await sdk.client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 24, temperature: 0, stop, stream: true });
    const pieces: string[] = [];
    let finish = null;
    for await (const c of stream) {
      pieces.push(c.choices[0].text);
      finish = c.choices[0].finish_reason ?? finish;
    }
    expect(pieces.join("")).toBe(before);
    expect(pieces.some((p) => p.includes(stop.slice(0, 3)) && !before.includes(p))).toBe(false);
    expect(finish).toBe("stop");
  });

  test("seeded sampling repeats; token-id prompts equal the text prompt", async () => {
    const ask = (seed: number) => sdk.client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 16, temperature: 0.9, top_p: 0.95, seed, ...extra({ top_k: 40, ignore_eos: true }) });
    const [a, b, c] = await Promise.all([ask(7), ask(7), ask(8)]);
    expect(a.choices[0].text).toBe(b.choices[0].text);
    expect(a.choices[0].text).not.toBe(c.choices[0].text);
    const ids = tokenizer.encode(PROMPT);
    const byText = await sdk.client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 8, temperature: 0 });
    const byIds = await sdk.client.completions.create({ model: MODEL, prompt: ids, max_tokens: 8, temperature: 0 });
    const byNested = await sdk.client.completions.create({ model: MODEL, prompt: [ids], max_tokens: 8, temperature: 0 });
    expect(byIds.choices[0].text).toBe(byText.choices[0].text);
    expect(byNested.choices[0].text).toBe(byText.choices[0].text);
  });

  test("models list, per-request compression fields, and SDK errors", async () => {
    const models = await sdk.client.models.list();
    expect(models.data.map((m) => m.id)).toEqual([MODEL]);
    const r = await sdk.client.chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: "Hello" }],
      max_tokens: 8,
      temperature: 0,
      ...extra({ kv_compression: { method: "kvcrush", rate: 2, crush_ratio: 0.25, crush_anchor: "alternate" }, protected_window_size: 8 }),
    });
    expect((r.usage as any).kv_cache.blocks_used).toBeGreaterThan(0);
    const err = await sdk.client.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "x" }], temperature: 3 }).catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect(err.param).toBe("temperature");
    const missing = await sdk.client.completions.create({ model: "gpt-4", prompt: "x" }).catch((e) => e);
    expect(missing).toBeInstanceOf(OpenAI.NotFoundError);
    expect(await metric(sdk.server.url, "kvc_kv_blocks_used")).toBe(0);
  });
});
