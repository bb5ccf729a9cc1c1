// Structured output, tools and logprobs over HTTP on kvc-small (in this process):
// JSON-schema answers sampled at temperature 1 validate in 50 runs of 50, tool_choice
// "required" answers come back as tool_calls whose arguments parse (whole and streamed),
// and hostile values of the new fields are OpenAI-shaped 400s that leak no KV block.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startServer, type RunningServer } from "../../routes/server.ts";
import { hasShared, modelDir } from "../fixtures/helpers.ts";
import { metric, postJson, sseData } from "../fixtures/server-helpers.ts";

const PARTIES = ["federalist", "whig", "democrat"];
// short on purpose: kvc-small spells forced text (keys, punctuation) in one-character tokens,
// so every key costs a handful of decode steps
const SCHEMA = {
  type: "object",
  properties: {
    name: { type: "string", maxLength: 12 },
    // a maximum xgrammar encodes exactly: its integer ranges widen the last digit's run
    // (maximum 120 compiles to 1[0-2][0-9]: 121-129 got through once; README, structured output)
    age: { type: "integer", minimum: 0, maximum: 129 },
    party: { enum: PARTIES },
  },
  required: ["name", "age", "party"],
  additionalProperties: false,
};

/** The checks SCHEMA makes, by hand: the test's own validator. */
function schemaErrors(text: string): string[] {
  let o: any;
  try {
    o = JSON.parse(text);
  } catch {
    return [`not JSON: ${text}`];
  }
  const errs: string[] = [];
  if (typeof o !== "object" || o === null || Array.isArray(o)) return ["not an object"];
  const keys = Object.keys(o).sort();
  if (keys.join() !== "age,name,party") errs.push(`keys ${keys}`);
  if (typeof o.name !== "string" || o.name.length > 12) errs.push(`name ${o.name}`);
  if (!Number.isInteger(o.age) || o.age < 0 || o.age > SCHEMA.properties.age.maximum) errs.push(`age ${o.age}`);
  if (!PARTIES.includes(o.party)) errs.push(`party ${o.party}`);
  return errs;
}

const TOOLS = [
  { type: "function", function: { name: "get_weather", description: "Weather in a city", parameters: { type: "object", properties: { city: { type: "string", maxLength: 10 } }, required: ["city"], additionalProperties: false } } },
  { type: "function", function: { name: "get_time", parameters: { type: "object", properties: { zone: { enum: ["utc", "est"] } }, required: ["zone"], additionalProperties: false } } },
];
const MESSAGES = [{ role: "user", content: "What is the weather in Paris?" }];

describe.skipIf(!hasShared)("structured output on kvc-small", () => {
  let server: RunningServer;
  const chat = (body: object) => postJson(`${server.url}/v1/chat/completions`, { messages: MESSAGES, ...body });

  beforeAll(async () => {
    server = await startServer({ modelDir: modelDir("kvc-small"), host: "127.0.0.1", port: 0, engine: { kvMemory: 64 * 2 ** 20 } });
  });
  afterAll(() => server.close());

  test("json_schema answers at temperature 1 validate against the schema in 50 runs of 50", async () => {
    const format = { type: "json_schema", json_schema: { name: "member", strict: true, schema: SCHEMA } };
    const answers = await Promise.all(Array.from({ length: 50 }, async (_, i) => {
      const r = await chat({ max_tokens: 120, temperature: 1, seed: i, response_format: format });
      expect(r.status).toBe(200);
      return (await r.json()).choices[0];
    }));
    const bad = answers.map((c) => [c.finish_reason, ...schemaErrors(c.message.content)]).filter((e) => e.length > 1 || e[0] !== "stop");
    expect(bad).toEqual([]);
    // not one answer forced: the samples differ
    expect(new Set(answers.map((c) => c.message.content)).size).toBeGreaterThan(10);
  }, 600_000);

  test("json_object: the answer is one JSON object", async () => {
    const r = await chat({ max_tokens: 40, temperature: 0, response_format: { type: "json_object" } });
    const c = (await r.json()).choices[0];
    if (c.finish_reason === "stop") expect(typeof JSON.parse(c.message.content)).toBe("object");
    else expect(c.message.content.startsWith("{")).toBe(true);
  }, 120_000);

  test("tool_choice required: tool_calls with arguments that parse, whole and streamed", async () => {
    const whole = await (await chat({ max_tokens: 150, temperature: 1, seed: 3, tools: TOOLS, tool_choice: "required", parallel_tool_calls: false })).json();
    const c = whole.choices[0];
    expect(c.finish_reason).toBe("tool_calls");
    expect(c.message.content).toBeNull();
    expect(c.message.tool_calls).toHaveLength(1);
    const call = c.message.tool_calls[0];
    expect(call.id).toMatch(/^call_/);
    expect(["get_weather", "get_time"]).toContain(call.function.name);
    expect(typeof JSON.parse(call.function.arguments)).toBe("object");

    const named = { type: "function", function: { name: "get_time" } };
    const res = await chat({ max_tokens: 150, temperature: 1, seed: 4, tools: TOOLS, tool_choice: named, stream: true });
    const events = sseData(await res.text()).filter((e) => e !== "[DONE]");
    const calls = events.flatMap((e) => e.choices[0]?.delta.tool_calls ?? []);
    expect(calls.length).toBeGreaterThanOrEqual(1);
    for (const [i, t] of calls.entries()) {
      expect(t.index).toBe(i);
      expect(t.function.name).toBe("get_time");
      expect(["utc", "est"]).toContain(JSON.parse(t.function.arguments).zone);
    }
    expect(events.at(-1).choices[0].finish_reason).toBe("tool_calls");
    expect(events.map((e) => e.choices[0]?.delta.content ?? "").join("")).toBe("");
  }, 300_000);

  test("logprobs stream with their tokens: chat and completions", async () => {
    const res = await chat({ max_tokens: 8, temperature: 0, logprobs: true, top_logprobs: 3, stream: true });
    const events = sseData(await res.text()).filter((e) => e !== "[DONE]");
    const content = events.flatMap((e) => e.choices[0]?.logprobs?.content ?? []);
    const usage = events.length;
    expect(content.length).toBeGreaterThanOrEqual(1);
    expect(content.length).toBeLessThanOrEqual(8);
    expect(usage).toBeGreaterThan(0);
    for (const t of content) {
      expect(t.top_logprobs).toHaveLength(3);
      expect(t.logprob).toBeLessThanOrEqual(0);
      expect(t.top_logprobs[0].logprob).toBe(t.logprob); // greedy takes the best
      expect(new TextDecoder().decode(Uint8Array.from(t.bytes))).toBe(t.token);
    }
    // special tokens (an EOS) carry logprobs but no text
    expect(content.map((t: any) => (/^<\|.*\|>$/.test(t.token) ? "" : t.token)).join("")).toBe(events.map((e) => e.choices[0]?.delta.content ?? "").join(""));
    const cmpl = await (await postJson(`${server.url}/v1/completions`, { prompt: "Once upon a time", max_tokens: 6, temperature: 0, logprobs: 2, ignore_eos: true })).json();
    const lp = cmpl.choices[0].logprobs;
    expect(lp.tokens.join("")).toBe(cmpl.choices[0].text);
    expect(lp.text_offset).toEqual(lp.tokens.map((_: string, i: number) => lp.tokens.slice(0, i).join("").length));
    expect(lp.top_logprobs.every((d: object) => Object.keys(d).length >= 2)).toBe(true);
  }, 120_000);

  test("hostile values of the new fields: 400s naming the field, and no KV block kept", async () => {
    // a body nesting past 64 levels is refused before it is read into fields (routes/middleware/json-body.ts)
    const deep = '{"type":"object","properties":{"a":'.repeat(5000) + '{"type":"string"}' + "}}".repeat(5000);
    const cases: [string, string | object, string | null][] = [
      ["/v1/chat/completions", { logprobs: true, top_logprobs: 1000 }, "top_logprobs"],
      ["/v1/chat/completions", { logprobs: true, top_logprobs: 21 }, "top_logprobs"],
      ["/v1/chat/completions", { top_logprobs: 2 }, "top_logprobs"],
      ["/v1/completions", { prompt: "x", logprobs: 6 }, "logprobs"],
      ["/v1/chat/completions", { response_format: { type: "json_schema", json_schema: { name: "s", schema: "not json {" } } }, "response_format.json_schema.schema"],
      ["/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema","json_schema":{"name":"s","schema":${deep}}}}`, null],
      ["/v1/chat/completions", { tools: [{ type: "function", function: { name: "f", parameters: JSON.parse('{"type":"object","properties":{"a":'.repeat(20) + "{}" + "}}".repeat(20)) } }] }, "tools[0].function.parameters"],
      ["/v1/chat/completions", { response_format: { type: "json_schema", json_schema: { name: "s", schema: { type: "nonsense" } } } }, "response_format.json_schema.schema"],
      ["/v1/chat/completions", { response_format: { type: "json_schema", json_schema: { name: "s", schema: { type: "object", properties: { a: { $ref: "#/nope" } } } } } }, "response_format.json_schema.schema"],
      ["/v1/chat/completions", { response_format: { type: "yaml" } }, "response_format.type"],
      ["/v1/chat/completions", { tools: [{ type: "function", function: { parameters: {} } }] }, "tools[0].function.name"],
      ["/v1/chat/completions", { tools: [{ type: "function", function: { name: "has space" } }] }, "tools[0].function.name"],
      ["/v1/chat/completions", { tools: [TOOLS[0], TOOLS[0]] }, "tools[1].function.name"],
      ["/v1/chat/completions", { tools: TOOLS, tool_choice: { type: "function", function: { name: "nowhere" } } }, "tool_choice.function.name"],
      ["/v1/chat/completions", { tool_choice: "required" }, "tool_choice"],
      ["/v1/chat/completions", { tools: [{ type: "function", function: { name: "f", parameters: { type: "array", items: "x" } } }] }, "tools[0].function.parameters"],
    ];
    for (const [path, body, param] of cases) {
      const full = typeof body === "string" ? body : { messages: MESSAGES, max_tokens: 4, ...body };
      const r = await postJson(`${server.url}${path}`, full);
      const text = await r.text();
      expect(r.status, `${param}: ${text.slice(0, 300)}`).toBe(400);
      const e = JSON.parse(text).error;
      expect(e.type).toBe("invalid_request_error");
      expect(e.param, e.message).toBe(param);
    }
    // the grammar engine goes on after a schema it aborted on
    const ok = await chat({ max_tokens: 120, temperature: 1, seed: 7, response_format: { type: "json_schema", json_schema: { name: "m", strict: true, schema: SCHEMA } } });
    expect(schemaErrors((await ok.json()).choices[0].message.content)).toEqual([]);
    expect(await metric(server.url, "kvc_kv_blocks_used")).toBe(0);
  }, 300_000);
});
