// From a chat request's response_format, tools and tool_choice to the grammar its
// answer is decoded under (src/serving/grammar.ts), and from the answer's text back to
// OpenAI's tool_calls.
//
// Tool calls are written as Hermes / Qwen 2.5 write them (Qwen2 chat templates render
// earlier calls this way, so such a model sees its own format):
//   <tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>
// one block per call, blocks separated by a newline. The grammar, an xgrammar
// structural tag, makes every block parse, names a function of `tools` and fits its
// `parameters` schema (one-line JSON, so a sampler cannot wander off into whitespace):
//   required / named  only blocks (of that one function when named): at least one, and
//                     just one unless parallel_tool_calls
//   auto              free text; where the text reaches "<tool_call>" the block must
//                     follow and be whole, so the model decides between answering and
//                     calling, and a call it starts is always valid ("triggered tags");
//                     beside a response_format: its JSON answer or one call
//   none              no tool grammar (response_format's alone, if any)
import type { GrammarSpec } from "../src/serving/grammar.ts";
import { jsonSchemaEbnf, schemaProblem } from "../src/serving/grammar.ts";
import { ApiError } from "./api-error.ts";
import type { ResponseFormat, Tool, ToolChoice } from "./schemas/structured.ts";

const OPEN = "<tool_call>";
const CLOSE = "</tool_call>";

interface StructuredRequest {
  response_format?: ResponseFormat | null;
  tools?: Tool[] | null;
  tool_choice?: ToolChoice | null;
  parallel_tool_calls?: boolean | null;
}

/** The grammar of a chat answer, the field it comes from (for errors), and whether tool calls may come back. */
export interface AnswerGrammar {
  spec: GrammarSpec;
  param: string;
}

/** The tools the answer may call (null: none), after checking tool_choice against them. */
export function callableTools(body: StructuredRequest): Tool[] | null {
  const choice = body.tool_choice ?? "auto";
  if (!body.tools?.length) {
    if (body.tool_choice != null && body.tool_choice !== "none") throw new ApiError(400, "tool_choice is only allowed when tools are specified", "tool_choice");
    return null;
  }
  const names = new Set<string>();
  body.tools.forEach((t, i) => {
    if (names.has(t.function.name)) throw new ApiError(400, `tools[${i}].function.name: "${t.function.name}" is named twice`, `tools[${i}].function.name`);
    names.add(t.function.name);
    const problem = t.function.parameters ? schemaProblem(t.function.parameters) : null;
    if (problem) throw new ApiError(400, `tools[${i}].function.parameters: ${problem}`, `tools[${i}].function.parameters`);
  });
  if (choice === "none") return null;
  if (typeof choice === "object") {
    const t = body.tools.find((t) => t.function.name === choice.function.name);
    if (!t) throw new ApiError(400, `tool_choice names the function "${choice.function.name}", which is not in tools`, "tool_choice.function.name");
    return [t];
  }
  return body.tools;
}

/** The grammar the answer is decoded under, or null for free text. Throws ApiErrors for schemas xgrammar would refuse. */
export async function answerGrammar(body: StructuredRequest, tools: Tool[] | null): Promise<AnswerGrammar | null> {
  const rf = body.response_format;
  const format: GrammarSpec | null =
    rf?.type === "json_object" ? { kind: "json_object" } : rf?.type === "json_schema" ? { kind: "json_schema", schema: rf.json_schema.schema ?? {}, strict: rf.json_schema.strict ?? false } : null;
  const formatParam = rf?.type === "json_schema" ? "response_format.json_schema.schema" : "response_format";
  if (format?.kind === "json_schema") {
    const problem = schemaProblem(format.schema);
    if (problem) throw new ApiError(400, `${formatParam}: ${problem}`, formatParam);
  }
  if (!tools) return format && { spec: format, param: formatParam };
  const choice = body.tool_choice ?? "auto";
  const parallel = body.parallel_tool_calls ?? true;
  const tags = await Promise.all(tools.map(async (t, i) => {
    const args = await asBadRequest(`tools[${i}].function.parameters`, () => jsonSchemaEbnf(t.function.parameters ?? { type: "object" }, t.function.strict ?? false));
    return { type: "tag", begin: `${OPEN}{"name": ${JSON.stringify(t.function.name)}, "arguments": `, content: { type: "grammar", grammar: args }, end: `}${CLOSE}` };
  }));
  const calls = { type: "tags_with_separator", tags, separator: "\n", at_least_one: true, stop_after_first: !parallel };
  if (choice !== "auto") return { spec: { kind: "structural_tag", format: calls }, param: "tools" };
  if (!format) return { spec: { kind: "structural_tag", format: { type: "triggered_tags", triggers: [OPEN], tags, stop_after_first: !parallel } }, param: "tools" };
  // auto beside a response format: one call or the formatted answer (xgrammar's "or" takes
  // tags but not the repetition of tags_with_separator, so no parallel calls here)
  const answer = format.kind === "json_object" ? { type: "object" } : format.schema;
  const answerEbnf = await asBadRequest(formatParam, () => jsonSchemaEbnf(answer, format.kind === "json_schema" && format.strict));
  const oneCall = tags.length === 1 ? tags[0] : { type: "or", elements: tags };
  return { spec: { kind: "structural_tag", format: { type: "or", elements: [oneCall, { type: "grammar", grammar: answerEbnf }] } }, param: "tools" };
}

async function asBadRequest<T>(param: string, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    throw new ApiError(400, `${param}: ${(e as Error).message}`, param);
  }
}

/** A tool call in OpenAI's shape (`arguments` is a JSON string). */
export interface ToolCall {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

const newCallId = () => `call_${crypto.randomUUID().replace(/-/g, "").slice(0, 24)}`;

/** The call a whole `<tool_call>...</tool_call>` block holds, or null when it does not parse (cut short). */
function parseCall(block: string): ToolCall | null {
  try {
    const o = JSON.parse(block.slice(OPEN.length, block.length - CLOSE.length));
    if (typeof o?.name !== "string") return null;
    return { id: newCallId(), type: "function", function: { name: o.name, arguments: JSON.stringify(o.arguments ?? {}) } };
  } catch {
    return null;
  }
}

/**
 * Splits an answer's text, as it streams, into content and tool calls: text that may be
 * the start of a block is held until the block closes (a call) or cannot be one (content).
 */
export class ToolCallSplitter {
  private held = "";
  /** the newline that separates blocks may still come after the last one */
  private afterBlock = false;
  readonly calls: ToolCall[] = [];

  /** Content that is certain now, and the calls completed by `text`. */
  push(text: string): { content: string; calls: ToolCall[] } {
    this.held += text;
    let content = "";
    const calls: ToolCall[] = [];
    for (;;) {
      if (this.afterBlock && this.held) {
        this.held = this.held.replace(/^\n/, "");
        this.afterBlock = false;
      }
      const open = this.held.indexOf(OPEN);
      if (open < 0) {
        // keep a tail that could still become "<tool_call>"
        let keep = 0;
        for (let k = Math.min(OPEN.length - 1, this.held.length); k > 0; k--) {
          if (OPEN.startsWith(this.held.slice(-k))) {
            keep = k;
            break;
          }
        }
        content += this.held.slice(0, this.held.length - keep);
        this.held = this.held.slice(this.held.length - keep);
        break;
      }
      content += this.held.slice(0, open);
      this.held = this.held.slice(open);
      const close = this.held.indexOf(CLOSE);
      if (close < 0) break;
      const block = this.held.slice(0, close + CLOSE.length);
      this.held = this.held.slice(block.length);
      this.afterBlock = true;
      const call = parseCall(block);
      if (call) calls.push(call);
      else content += block;
    }
    this.calls.push(...calls);
    return { content, calls };
  }

  /** What is still held at the end (a block cut short) is content. */
  flush(): string {
    const rest = this.held;
    this.held = "";
    return rest;
  }
}

/** A whole answer as content and tool calls (content null when calls alone came back, as OpenAI answers). */
export function splitToolCalls(text: string): { content: string | null; calls: ToolCall[] } {
  const s = new ToolCallSplitter();
  const content = s.push(text).content + s.flush();
  return { content: s.calls.length && !content.trim() ? null : content, calls: s.calls };
}
