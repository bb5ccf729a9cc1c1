// logprobs, response_format and tools through the openai npm SDK against `kvc serve`
// (kvc-nano) as a process under Bun and under Deno (xgrammar's wasm runs in both):
// streamed and whole, every response read through the SDK's own types.
import { describe, expect, test } from "bun:test";
import OpenAI from "openai";
import { RUNTIMES, sdkServer, metric } from "../fixtures/server-helpers.ts";

const MODEL = "kvc-nano";
const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: "user", content: "Tell me about the Union." }];
const SCHEMA = { type: "object", properties: { party: { enum: ["whig", "tory"] }, ok: { type: "boolean" } }, required: ["party", "ok"], additionalProperties: false };
const FORMAT: OpenAI.ResponseFormatJSONSchema = { type: "json_schema", json_schema: { name: "answer", strict: true, schema: SCHEMA } };
const TOOLS: OpenAI.ChatCompletionTool[] = [
  { type: "function", function: { name: "get_weather", parameters: { type: "object", properties: { city: { enum: ["paris", "rome"] } }, required: ["city"], additionalProperties: false } } },
];

function checkAnswer(text: string) {
  const o = JSON.parse(text);
  expect(Object.keys(o).sort()).toEqual(["ok", "party"]);
  expect(["whig", "tory"]).toContain(o.party);
  expect(typeof o.ok).toBe("boolean");
}

describe.each(RUNTIMES)("%s", (runtime) => {
  const sdk = sdkServer(runtime);

  test("chat logprobs with top_logprobs, whole and streamed alike", async () => {
    const whole = await sdk.client.chat.completions.create({ model: MODEL, messages, max_tokens: 6, temperature: 0, logprobs: true, top_logprobs: 4 });
    const content = whole.choices[0].logprobs!.content!;
    expect(content.length).toBe(whole.usage!.completion_tokens);
    for (const t of content) {
      expect(t.top_logprobs).toHaveLength(4);
      expect(t.top_logprobs[0].logprob).toBeGreaterThanOrEqual(t.top_logprobs[3].logprob);
      expect(t.bytes!.length).toBeGreaterThan(0);
    }
    const stream = await sdk.client.chat.completions.create({ model: MODEL, messages, max_tokens: 6, temperature: 0, logprobs: true, top_logprobs: 4, stream: true });
    const streamed: OpenAI.ChatCompletionTokenLogprob[] = [];
    for await (const chunk of stream) streamed.push(...(chunk.choices[0]?.logprobs?.content ?? []));
    expect(streamed.map((t) => t.token)).toEqual(content.map((t) => t.token));
    for (let i = 0; i < content.length; i++) expect(Math.abs(streamed[i].logprob - content[i].logprob)).toBeLessThan(1e-5);
  });

  test("completions logprobs, whole and streamed", async () => {
    const whole = await sdk.client.completions.create({ model: MODEL, prompt: "The President", max_tokens: 5, temperature: 0, logprobs: 3 });
    const lp = whole.choices[0].logprobs!;
    expect(lp.tokens!.join("")).toBe(whole.choices[0].text);
    expect(lp.token_logprobs!.every((x) => x <= 0)).toBe(true);
    expect(lp.top_logprobs!.every((d) => Object.keys(d).length >= 3)).toBe(true);
    expect(lp.text_offset![0]).toBe(0);
    const stream = await sdk.client.completions.create({ model: MODEL, prompt: "The President", max_tokens: 5, temperature: 0, logprobs: 3, stream: true });
    const tokens: string[] = [];
    const offsets: number[] = [];
    for await (const c of stream) {
      tokens.push(...(c.choices[0]?.logprobs?.tokens ?? []));
      offsets.push(...(c.choices[0]?.logprobs?.text_offset ?? []));
    }
    expect(tokens).toEqual(lp.tokens!);
    expect(offsets).toEqual(lp.text_offset!);
  });

  test("response_format json_schema: the answer parses and fits, whole and streamed", async () => {
    const whole = await sdk.client.chat.completions.create({ model: MODEL, messages, max_tokens: 60, temperature: 1, response_format: FORMAT });
    expect(whole.choices[0].finish_reason).toBe("stop");
    checkAnswer(whole.choices[0].message.content!);
    const stream = await sdk.client.chat.completions.create({ model: MODEL, messages, max_tokens: 60, temperature: 1, response_format: FORMAT, stream: true });
    let text = "";
    for await (const c of stream) text += c.choices[0]?.delta.content ?? "";
    checkAnswer(text);
  });

  test("tools: a required call comes back as tool_calls, whole and streamed; auto answers either way", async () => {
    const whole = await sdk.client.chat.completions.create({ model: MODEL, messages, max_tokens: 100, temperature: 1, tools: TOOLS, tool_choice: "required" });
    const choice = whole.choices[0];
    expect(choice.finish_reason).toBe("tool_calls");
    const call = choice.message.tool_calls![0] as OpenAI.ChatCompletionMessageFunctionToolCall;
    expect(call.function.name).toBe("get_weather");
    expect(["paris", "rome"]).toContain(JSON.parse(call.function.arguments).city);

    // the SDK's stream helper puts the call deltas together
    const runner = sdk.client.chat.completions.stream({ model: MODEL, messages, max_tokens: 100, temperature: 1, tools: TOOLS, tool_choice: { type: "function", function: { name: "get_weather" } }, parallel_tool_calls: false });
    const final = await runner.finalChatCompletion();
    expect(final.choices[0].finish_reason).toBe("tool_calls");
    const streamed = final.choices[0].message.tool_calls![0] as OpenAI.ChatCompletionMessageFunctionToolCall;
    expect(["paris", "rome"]).toContain(JSON.parse(streamed.function.arguments).city);

    // a turn that answers the call, then auto: text or a valid call
    const next = await sdk.client.chat.completions.create({
      model: MODEL,
      messages: [...messages, choice.message, { role: "tool", tool_call_id: call.id, content: "sunny" }],
      max_tokens: 40,
      temperature: 1,
      tools: TOOLS,
    });
    const n = next.choices[0];
    if (n.message.tool_calls?.length) expect(n.finish_reason).toBe("tool_calls");
    else expect(["stop", "length"]).toContain(n.finish_reason);
    expect(await metric(sdk.server.url, "kvc_kv_blocks_used")).toBe(0);
  });
});
