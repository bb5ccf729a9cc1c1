// The tool-call grammar and splitter (routes/structured-output.ts) on the CPU, with
// xgrammar over kvc-nano's vocabulary: under tool_choice "auto" both plain text and a
// whole call are accepted and a call once begun must fit its function; a streamed
// answer splits into content and calls wherever its chunks cut it.
import { describe, expect, test } from "bun:test";
import { answerGrammar, callableTools, splitToolCalls, ToolCallSplitter } from "../../routes/structured-output.ts";
import { Grammars } from "../../src/serving/grammar.ts";
import { TextTokenizer } from "../../src/model/tokenizer.ts";
import { NANO } from "../fixtures/server-helpers.ts";

const tk = TextTokenizer.load(NANO);
const grammars = new Grammars(tk, 8192, [1, 4]);
const TOOLS = [{ type: "function" as const, function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"], additionalProperties: false } } }];
const CALL = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>';

/** Whether the grammar of `body` takes `text` (its tokens, then an EOS) whole. */
async function takes(body: object, text: string): Promise<boolean> {
  const g = await answerGrammar(body, callableTools(body));
  const c = await grammars.constraint(g!.spec);
  try {
    for (const id of [...tk.encode(text, false), 4]) {
      const mask = await c.nextMask();
      if (!((mask[id >>> 5] >>> (id & 31)) & 1) || !c.accept(id)) return false;
    }
    return c.terminated;
  } finally {
    c.dispose();
  }
}

describe("tool-call grammar", () => {
  test("auto: plain text or a valid call; a call with a wrong argument is refused", async () => {
    const auto = { tools: TOOLS, tool_choice: "auto" };
    expect(await takes(auto, "It is sunny in Paris.")).toBe(true);
    expect(await takes(auto, CALL)).toBe(true);
    expect(await takes(auto, '<tool_call>{"name": "get_weather", "arguments": {"town": "Paris"}}</tool_call>')).toBe(false);
    expect(await takes(auto, '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>')).toBe(false);
  });

  test("auto beside a response format: a call or the formatted answer, not free text", async () => {
    const format = { type: "json_schema", json_schema: { name: "a", strict: true, schema: { type: "object", properties: { ok: { type: "boolean" } }, required: ["ok"], additionalProperties: false } } };
    const body = { tools: TOOLS, response_format: format };
    expect(await takes(body, CALL)).toBe(true);
    expect(await takes(body, '{"ok": true}')).toBe(true);
    expect(await takes(body, "It is sunny.")).toBe(false);
    expect(await takes(body, '{"ok": 1}')).toBe(false);
  });

  test("a function without parameters takes any object", async () => {
    const body = { tools: [{ type: "function" as const, function: { name: "ping" } }], tool_choice: "required" };
    expect(await takes(body, '<tool_call>{"name": "ping", "arguments": {"x": [1, "y"]}}</tool_call>')).toBe(true);
  });

  test("required: calls only, one unless parallel_tool_calls", async () => {
    expect(await takes({ tools: TOOLS, tool_choice: "required" }, "It is sunny.")).toBe(false);
    expect(await takes({ tools: TOOLS, tool_choice: "required" }, `${CALL}\n${CALL}`)).toBe(true);
    expect(await takes({ tools: TOOLS, tool_choice: "required", parallel_tool_calls: false }, `${CALL}\n${CALL}`)).toBe(false);
  });
});

describe("ToolCallSplitter", () => {
  test("content and calls come out the same however the text is cut", () => {
    const text = `Let me look. ${CALL}\n${CALL}`;
    for (const cut of [1, 2, 3, 5, 7, 11, 1000]) {
      const s = new ToolCallSplitter();
      let content = "";
      for (let i = 0; i < text.length; i += cut) content += s.push(text.slice(i, i + cut)).content;
      content += s.flush();
      expect(content).toBe("Let me look. ");
      expect(s.calls.map((c) => [c.function.name, JSON.parse(c.function.arguments)])).toEqual([["get_weather", { city: "Paris" }], ["get_weather", { city: "Paris" }]]);
    }
  });

  test("a block cut short stays content; text alone has no calls; calls alone have null content", () => {
    expect(splitToolCalls('<tool_call>{"name": "get_weather", "argu')).toEqual({ content: '<tool_call>{"name": "get_weather", "argu', calls: [] });
    expect(splitToolCalls("a < b, <tool and more")).toEqual({ content: "a < b, <tool and more", calls: [] });
    const r = splitToolCalls(CALL);
    expect(r.content).toBeNull();
    expect(r.calls[0].id).toMatch(/^call_[0-9a-f]{24}$/);
  });
});
