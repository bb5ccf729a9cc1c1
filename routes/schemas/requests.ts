// Request bodies of /v1/completions and /v1/chat/completions as valibot schemas.
// Unknown top-level fields are ignored as OpenAI and vLLM do; fields we know but
// do not implement are refused when they ask for something other than the default.
import * as v from "valibot";
import { KvCompressFields } from "./kv-compression.ts";
import { objectSchema } from "./object-schema.ts";
import { StructuredFields } from "./structured.ts";
import { TOP_LOGPROBS_MAX } from "../../src/serving/generation.ts";

const TokenId = v.pipe(v.number(), v.integer(), v.minValue(0));
const MaxTokens = v.pipe(v.number(), v.safeInteger(), v.minValue(1));
const StopString = v.pipe(v.string(), v.minLength(1, "stop strings must not be empty"), v.maxLength(1024));

/** A field this server does not implement: only its default value (or null) passes. */
const onlyDefault = <T extends v.GenericSchema>(schema: T, isDefault: (x: v.InferOutput<T>) => boolean, what: string) =>
  v.nullish(v.pipe(schema, v.check(isDefault, `${what} is not supported by this server`)));

const StreamOptionsSchema = objectSchema({ include_usage: v.nullish(v.boolean()) });

/** Sampling, length, stop and compression: shared by both endpoints. */
const CommonFields = {
  model: v.nullish(v.string()),
  max_tokens: v.nullish(MaxTokens),
  temperature: v.nullish(v.pipe(v.number(), v.minValue(0), v.maxValue(2))),
  top_p: v.nullish(v.pipe(v.number(), v.gtValue(0), v.maxValue(1))),
  /** vLLM's extension; -1 and 0 both mean off */
  top_k: v.nullish(v.pipe(v.number(), v.safeInteger(), v.minValue(-1))),
  seed: v.nullish(v.pipe(v.number(), v.safeInteger())),
  /** choices: at most OpenAI's 128, and the sequences the engine runs at once (generation-params.ts) */
  n: v.nullish(v.pipe(v.number(), v.safeInteger(), v.minValue(1), v.maxValue(128, "n may be at most 128"))),
  stop: v.nullish(v.union([StopString, v.pipe(v.array(StopString), v.maxLength(16))])),
  stream: v.nullish(v.boolean()),
  stream_options: v.nullish(StreamOptionsSchema),
  /** vLLM's extension: keep generating past EOS */
  ignore_eos: v.nullish(v.boolean()),
  user: v.nullish(v.string()),
  presence_penalty: onlyDefault(v.number(), (x) => x === 0, "presence_penalty other than 0"),
  frequency_penalty: onlyDefault(v.number(), (x) => x === 0, "frequency_penalty other than 0"),
  logit_bias: onlyDefault(v.record(v.string(), v.number()), (x) => Object.keys(x).length === 0, "logit_bias"),
  ...KvCompressFields,
};

const PromptText = v.pipe(v.string(), v.minLength(1, "prompt must not be empty"));

const PromptSchema = v.union(
  [
    PromptText,
    v.pipe(v.array(TokenId), v.minLength(1, "prompt token ids must not be empty")),
    v.pipe(v.array(PromptText), v.length(1, "only one prompt per request is supported")),
    v.pipe(v.array(v.pipe(v.array(TokenId), v.minLength(1))), v.length(1, "only one prompt per request is supported")),
  ],
  "prompt must be a string, an array of token ids, or an array holding one of those",
);

export const CompletionRequestSchema = objectSchema({
  ...CommonFields,
  prompt: PromptSchema,
  best_of: onlyDefault(v.number(), (x) => x === 1, "best_of other than 1"),
  echo: onlyDefault(v.boolean(), (x) => !x, "echo"),
  /** OpenAI's legacy limit: the sampled token's logprob and up to 5 alternatives */
  logprobs: v.nullish(v.pipe(v.number(), v.safeInteger("logprobs must be an integer from 0 to 5"), v.minValue(0, "logprobs must be an integer from 0 to 5"), v.maxValue(5, "logprobs must be an integer from 0 to 5"))),
  suffix: onlyDefault(v.string(), (x) => x === "", "suffix"),
});
export type CompletionRequest = v.InferOutput<typeof CompletionRequestSchema>;

const TextPartSchema = objectSchema({ type: v.literal("text"), text: v.string() });

const ToolCallSchema = objectSchema({
  id: v.string(),
  type: v.literal("function"),
  function: objectSchema({ name: v.string(), arguments: v.string() }),
});

const MessageSchema = v.pipe(
  objectSchema({
    role: v.picklist(["system", "developer", "user", "assistant", "tool"]),
    content: v.nullish(v.union([v.string(), v.array(TextPartSchema)], "content must be a string or an array of text parts")),
    name: v.nullish(v.string()),
    /** an assistant turn that called tools */
    tool_calls: v.nullish(v.array(ToolCallSchema)),
    /** a tool turn: the call it answers */
    tool_call_id: v.nullish(v.string()),
  }),
  v.forward(v.check((m) => m.content != null || (m.role === "assistant" && !!m.tool_calls?.length), "content must be a string or an array of text parts (null only in an assistant turn with tool_calls)"), ["content"]),
  v.forward(v.check((m) => m.role !== "tool" || m.tool_call_id != null, "a tool message needs the tool_call_id it answers"), ["tool_call_id"]),
);
export type ChatMessageInput = v.InferOutput<typeof MessageSchema>;

export const ChatRequestSchema = objectSchema({
  ...CommonFields,
  messages: v.pipe(v.array(MessageSchema), v.minLength(1, "messages must hold at least one message")),
  max_completion_tokens: v.nullish(MaxTokens),
  logprobs: v.nullish(v.boolean()),
  top_logprobs: v.nullish(v.pipe(v.number(), v.safeInteger(`top_logprobs must be an integer from 0 to ${TOP_LOGPROBS_MAX}`), v.minValue(0, `top_logprobs must be an integer from 0 to ${TOP_LOGPROBS_MAX}`), v.maxValue(TOP_LOGPROBS_MAX, `top_logprobs must be an integer from 0 to ${TOP_LOGPROBS_MAX}`))),
  ...StructuredFields,
  // legacy function calling: refused like tools, never ignored
  functions: onlyDefault(v.array(v.unknown()), (x) => x.length === 0, "functions (legacy function calling)"),
  function_call: onlyDefault(v.unknown(), (x) => x === "none", "function_call (legacy function calling)"),
});
export type ChatRequest = v.InferOutput<typeof ChatRequestSchema>;

export type CommonRequest = CompletionRequest | ChatRequest;
