// Structured output and tools in chat requests: `response_format` (text, json_object,
// json_schema), `tools` (functions with JSON-schema parameters), `tool_choice` and
// `parallel_tool_calls`, as OpenAI takes them. Schemas stay JSON objects here; whether
// xgrammar can compile them is checked when the grammar is built (routes/structured-output.ts).
import * as v from "valibot";
import { objectSchema } from "./object-schema.ts";

const isPlainObject = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x);
/** a JSON schema: any JSON object (a string holding JSON is not one) */
const JsonSchemaObject = v.custom<Record<string, unknown>>(isPlainObject, "a JSON schema must be a JSON object");

const FunctionName = v.pipe(v.string("a function name must be a string"), v.regex(/^[a-zA-Z0-9_-]{1,64}$/, "a function name is 1 to 64 letters, digits, underscores or dashes"));

export const ToolSchema = objectSchema({
  type: v.literal("function", 'tools are of type "function"'),
  function: objectSchema({
    name: FunctionName,
    description: v.nullish(v.string()),
    parameters: v.nullish(JsonSchemaObject),
    strict: v.nullish(v.boolean()),
  }),
});
export type Tool = v.InferOutput<typeof ToolSchema>;

export const ToolChoiceSchema = v.union(
  [v.picklist(["none", "auto", "required"]), objectSchema({ type: v.literal("function"), function: objectSchema({ name: FunctionName }) })],
  'tool_choice is "none", "auto", "required" or {"type": "function", "function": {"name": ...}}',
);
export type ToolChoice = v.InferOutput<typeof ToolChoiceSchema>;

export const ResponseFormatSchema = v.variant(
  "type",
  [
    v.object({ type: v.literal("text") }),
    v.object({ type: v.literal("json_object") }),
    v.object({
      type: v.literal("json_schema"),
      json_schema: objectSchema({
        name: v.pipe(v.string(), v.regex(/^[a-zA-Z0-9_-]{1,64}$/, "a schema name is 1 to 64 letters, digits, underscores or dashes")),
        description: v.nullish(v.string()),
        schema: v.nullish(JsonSchemaObject),
        strict: v.nullish(v.boolean()),
      }),
    }),
  ],
  'response_format.type is "text", "json_object" or "json_schema"',
);
export type ResponseFormat = v.InferOutput<typeof ResponseFormatSchema>;

/** The request fields (spread into the chat request schema). */
export const StructuredFields = {
  response_format: v.nullish(ResponseFormatSchema),
  tools: v.nullish(v.pipe(v.array(ToolSchema), v.maxLength(128, "at most 128 tools"))),
  tool_choice: v.nullish(ToolChoiceSchema),
  parallel_tool_calls: v.nullish(v.boolean()),
};
