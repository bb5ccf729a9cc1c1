// Hostile and malformed input over real HTTP, against a server process under Bun
// and under Deno: hundreds of bad bodies, each a 4xx in OpenAI's error shape
// naming the bad field; auth, unknown routes and models; then the server still
// answers and no KV block has leaked.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { metric, RUNTIMES, serveNano, type ServerProcess } from "../fixtures/server-helpers.ts";

const KEY = "sk-test-key";

interface Case {
  name: string;
  method?: string;
  path?: string;
  /** JSON-encoded unless `raw` is given */
  body?: unknown;
  raw?: BodyInit;
  headers?: Record<string, string>;
  status: number;
  /** expected error.param, when the case is about one field */
  param?: string | null;
  /** text the message must hold */
  message?: RegExp;
  /** the Allow header a 405 must carry */
  allow?: string;
}

const COMPLETION = { model: "kvc-nano", prompt: "Hello", max_tokens: 4 };
const CHAT = { model: "kvc-nano", messages: [{ role: "user", content: "Hi" }], max_tokens: 4 };
const WRONG_TYPES: unknown[] = ["abc", "NaN", "Infinity", "-1e400", true, [], {}, [1, 2], { $gt: 0 }];

/** For each field, bad values put into both endpoints' bodies (or one). */
function fieldCases(): Case[] {
  const out: Case[] = [];
  const add = (field: string, values: unknown[], bases: [string, object][], status = 400) => {
    for (const [path, base] of bases) {
      for (const v of values) {
        const body = setPath(structuredClone(base), field, v);
        out.push({ name: `${path} ${field}=${JSON.stringify(v)}`, path, body, status, param: status === 400 ? field : undefined });
      }
    }
  };
  const both: [string, object][] = [
    ["/v1/completions", COMPLETION],
    ["/v1/chat/completions", CHAT],
  ];
  const completions = [both[0]];
  const chat = [both[1]];
  add("max_tokens", [...WRONG_TYPES, 0, -1, 1.5, 2 ** 60, 1e308], both);
  add("temperature", [...WRONG_TYPES, -0.1, 2.5, 1e308], both);
  add("top_p", ["1", true, [], 0, -0.5, 1.5], both);
  add("top_k", ["40", false, -2, 1.5, 2 ** 60], both);
  add("seed", ["7", {}, 1.5, 2 ** 64, -(2 ** 64)], both);
  add("n", ["1", 0, -1, 1.5, 129, 1e9, 2 ** 60], both);
  add("stop", [5, true, {}, [1], [""], "", ["a", 3], Array(17).fill("x"), "x".repeat(2000)], both);
  add("stream", ["true", 1, 0, "yes", {}], both);
  add("ignore_eos", ["false", 1, []], both);
  add("stream_options", ["x", 5, [], true], both);
  add("stream_options.include_usage", ["yes", 1], both);
  add("presence_penalty", ["0", 0.5], both);
  add("frequency_penalty", [-1], both);
  add("logit_bias", [{ "50": 100 }, "x"], both);
  add("model", [5, true, [], {}], both);
  add("model", ["gpt-4", "kvc-nano ", "KVC-NANO", "../kvc-nano"], both, 404);
  add("prompt", ["", [""], 5, true, {}, [], [-1], [1.5], ["a", "b"], [[1], [2]], [[]], null, [8192], [[1e10]], ["x", 1]], completions);
  add("echo", [true, "no"], completions);
  add("best_of", [2, "1"], completions);
  add("logprobs", [6, true, -1, 1.5, "2", 1000], completions);
  add("suffix", ["end", 5], completions);
  add("messages", [5, "hi", {}, [], [{}], [1, 2], null], chat);
  add("messages[0].role", ["function", 5, "", "USER"], chat);
  add("messages[0].content", [5, null, {}, [{ type: "image_url", image_url: { url: "http://x" } }], [{ type: "text" }], [{ type: "text", text: 5 }]], chat);
  add("max_completion_tokens", [0, -3, "8", 1.5], chat);
  add("logprobs", ["x", 1], chat);
  add("top_logprobs", [3, 21, 1000, -1, 1.5, "3"], chat); // also 3: top_logprobs needs logprobs: true
  add("tools", ["x", {}, [5], [{ type: "function" }], [{ type: "function", function: {} }], [{ type: "function", function: { name: "" } }], [{ type: "function", function: { name: "f", parameters: "x" } }], [{ type: "web_search" }]], chat);
  add("tool_choice", ["auto", "required", "sometimes", 5, { type: "function" }], chat); // no tools: only "none" goes
  add("parallel_tool_calls", ["yes", 1], chat);
  // legacy function calling is refused like tools, never ignored
  add("functions", [[{ name: "get_weather", parameters: { type: "object", properties: {} } }], "x"], chat);
  add("function_call", ["auto", { name: "get_weather" }], chat);
  add("response_format", ["json", 5, { type: "yaml" }, { type: "json_schema" }, { type: "json_schema", json_schema: { schema: {} } }, { type: "json_schema", json_schema: { name: "s", schema: "{}" } }, { type: "json_schema", json_schema: { name: "s", schema: { type: "nonsense" } } }], chat);
  // compression: every field of kv_compression, and the KV-Compress fork's top-level fields
  add("kv_compression", ["kvcompress", 5, [], true], both);
  add("kv_compression.method", ["fast", 5, "", "KVCOMPRESS", ["kvcompress"]], both);
  add("kv_compression.rate", [0.5, 0, -1, "2", "NaN", true, [], 0.999999], both);
  for (const f of ["max_cache_tokens", "observation_window", "interval"]) {
    add(`kv_compression.${f}`, [0, -1, 1.5, "8", true, 2 ** 60], both);
  }
  add("kv_compression.protected_window", [-1, 1.5, "8", true, 2 ** 60], both); // 0: nothing protected
  add("kv_compression.compress_once", ["true", 1], both);
  add("kv_compression.crush_ratio", [1, 1.5, -0.1, "0.2"], both);
  add("kv_compression.crush_anchor", ["median", 3], both);
  add("kv_compression.crush_base", ["streaming"], both);
  add("kv_compression.allocation", ["even", "ADA", 1], both);
  add("kv_compression.max_cache_token", [64], both); // a misspelt key
  add("kv_compression.__proto__", [{ rate: 0.5 }], both);
  add("max_cache_tokens", [0, -5, "x", 1.5], both);
  add("protected_window_size", [-1, "16"], both);
  add("compress_once", ["no", 0], both);
  return out;
}

/** Bodies that are broken as bytes, JSON or HTTP rather than in one field. */
function rawCases(): Case[] {
  const enc = new TextEncoder();
  const bytes = (...parts: (string | number[])[]) => {
    const chunks = parts.map((p) => (typeof p === "string" ? enc.encode(p) : new Uint8Array(p)));
    const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
    let o = 0;
    for (const c of chunks) out.set(c, (o += c.length) - c.length);
    return out;
  };
  const deep = (n: number) => "[".repeat(n) + "]".repeat(n);
  const cases: Case[] = [];
  for (const path of ["/v1/completions", "/v1/chat/completions"]) {
    const json = (name: string, raw: string, status = 400, param?: string, message?: RegExp) => cases.push({ name: `${path} ${name}`, path, raw, status, param, message });
    json("empty body", "", 400, undefined, /empty/);
    json("whitespace body", "   ");
    for (const bad of ["{", '{"model": }', "nul", "{'prompt':'x'}", "[1,2", '{"prompt":"x",}', '{"prompt":"x"} {}', '{"prompt":"x","max_tokens":NaN}', '{"prompt":"x","max_tokens":Infinity}', "\u0000"]) {
      json(`invalid JSON ${JSON.stringify(bad)}`, bad, 400, undefined, /not valid JSON/);
    }
    for (const v of ["[]", "null", '"prompt"', "42", "true", "[{}]"]) json(`top level ${v}`, v);
    json("1e999 is Infinity", '{"model":"kvc-nano","prompt":"x","messages":[{"role":"user","content":"x"}],"max_tokens":1e999}', 400, "max_tokens");
    json("rate 1e999", '{"prompt":"x","messages":[{"role":"user","content":"x"}],"kv_compression":{"method":"kvcompress","rate":1e999}}', 400, "kv_compression.rate");
    json("deep arrays", deep(100_000), 400, undefined, /levels deep/);
    json("deep objects", '{"a":'.repeat(5000) + "1" + "}".repeat(5000), 400, undefined, /levels deep/);
    json("deep field", `{"prompt":"x","messages":[{"role":"user","content":"x"}],"stop":${deep(80)}}`, 400, undefined, /levels deep/);
    json("method without budget", '{"prompt":"x","messages":[{"role":"user","content":"x"}],"kv_compression":{"method":"snapkv"}}', 400, "kv_compression.rate");
    json("stream_options without stream", '{"prompt":"x","messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}}', 400, "stream_options");
    const utf8 = (name: string, b: Uint8Array<ArrayBuffer>) => cases.push({ name: `${path} ${name}`, path, raw: b, status: 400, message: /UTF-8/ });
    utf8("invalid UTF-8 0xff", bytes('{"prompt":"', [0xff, 0xfe], '","messages":[]}'));
    utf8("overlong UTF-8", bytes('{"prompt":"', [0xc0, 0xaf], '"}'));
    utf8("UTF-8 surrogate", bytes('{"prompt":"', [0xed, 0xa0, 0x80], '"}'));
    utf8("truncated UTF-8", bytes('{"prompt":"', [0xe2, 0x82], '"}'));
    cases.push({ name: `${path} UTF-16 body`, path, raw: new Blob([new Uint16Array([...'{"prompt":"x"}'].map((c) => c.charCodeAt(0)))]), status: 400 });
    const big = `{"prompt":"${"a".repeat(10 * 2 ** 20)}"}`;
    cases.push({ name: `${path} 10 MB body`, path, raw: big, status: 413 });
    cases.push({ name: `${path} 10 MB chunked body`, path, raw: new Blob([big]).stream(), status: 413 });
    cases.push({ name: `${path} 5 MB body`, path, raw: `{"prompt":"${"a".repeat(5 * 2 ** 20)}"}`, status: 413 });
    for (const type of ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/jsonx", "json", ""]) {
      cases.push({ name: `${path} content-type ${JSON.stringify(type)}`, path, body: path.includes("chat") ? CHAT : COMPLETION, headers: { "Content-Type": type }, status: 415 });
    }
  }
  // limits the engine would refuse, caught with both numbers in the message
  const longText = "the people of the union ".repeat(1500);
  cases.push({ name: "prompt longer than the context", path: "/v1/completions", body: { prompt: longText }, status: 400, param: "prompt", message: /\d+ tokens.*2048/ });
  cases.push({ name: "chat longer than the context", path: "/v1/chat/completions", body: { messages: [{ role: "user", content: longText }] }, status: 400, param: "messages", message: /\d+ tokens.*2048/ });
  // megabytes of text are refused before tokenizing (that would stall every stream for seconds)
  const huge = "a".repeat(3 * 2 ** 20);
  cases.push({ name: "3 MB prompt", path: "/v1/completions", body: { prompt: huge }, status: 400, param: "prompt", message: /characters.*2048 tokens/ });
  cases.push({ name: "3 MB prompt in an array", path: "/v1/completions", body: { prompt: [huge] }, status: 400, param: "prompt" });
  cases.push({ name: "3 MB of chat", path: "/v1/chat/completions", body: { messages: Array(3).fill({ role: "user", content: huge.slice(0, 2 ** 20) }) }, status: 400, param: "messages", message: /characters/ });
  cases.push({ name: "prompt ids longer than the context", path: "/v1/completions", body: { prompt: new Array(3000).fill(5) }, status: 400, param: "prompt", message: /3000 tokens.*2048/ });
  cases.push({ name: "prompt + max_tokens over the context", path: "/v1/completions", body: { prompt: "Hello", max_tokens: 2047 }, status: 400, param: "max_tokens", message: /2048.*2047/ });
  cases.push({ name: "prompt + max_completion_tokens over the context", path: "/v1/chat/completions", body: { ...CHAT, max_completion_tokens: 4000 }, status: 400, param: "max_completion_tokens" });
  cases.push({ name: "token id past the vocabulary", path: "/v1/completions", body: { prompt: [1, 2, 8192] }, status: 400, param: "prompt[2]", message: /8192/ });
  // routes and methods: a route asked with another method is a 405 naming the ones it takes
  for (const [method, path] of [["POST", "/v1/embeddings"], ["GET", "/index.html"], ["GET", "/v1"], ["GET", "/v1/models/gpt-4"], ["GET", "/v2/models"]] as const) {
    cases.push({ name: `${method} ${path}`, method, path, body: method === "GET" ? undefined : COMPLETION, status: 404 });
  }
  for (const [method, path, allow] of [["GET", "/v1/completions", "POST"], ["PUT", "/v1/chat/completions", "POST"], ["DELETE", "/v1/models", "GET, HEAD"], ["POST", "/health", "GET, HEAD"], ["PATCH", "/v1/models/kvc-nano", "GET, HEAD"]] as const) {
    cases.push({ name: `${method} ${path}`, method, path, body: method === "GET" ? undefined : COMPLETION, status: 405, allow, message: new RegExp(`takes ${allow.split(", ")[0]}`) });
  }
  // authentication
  for (const auth of [undefined, "", "Bearer", "Bearer ", "Bearer wrong", `Bearer ${KEY}x`, `Basic ${KEY}`, KEY, `Bearer ${KEY.slice(0, -1)}`]) {
    cases.push({ name: `authorization ${JSON.stringify(auth)}`, path: "/v1/completions", body: COMPLETION, headers: { Authorization: auth as string }, status: 401 });
  }
  cases.push({ name: "models without a key", method: "GET", path: "/v1/models", headers: { Authorization: undefined as any }, status: 401 });
  return cases;
}

/** The field itself or a place inside it (prompt[0] is inside prompt). */
function samePath(got: string | null | undefined, want: string | null): boolean {
  if (got === want) return true;
  return typeof got === "string" && want !== null && (got.startsWith(`${want}.`) || got.startsWith(`${want}[`));
}

function setPath(o: any, path: string, value: unknown): any {
  const keys = path.replace(/\[(\d+)\]/g, ".$1").split(".");
  let t = o;
  for (const k of keys.slice(0, -1)) t = t[k] ??= {};
  if (keys.at(-1) === "__proto__") Object.defineProperty(t, "__proto__", { value, enumerable: true, writable: true, configurable: true });
  else t[keys.at(-1)!] = value;
  return o;
}

describe.each(RUNTIMES)("%s", (runtime) => {
  let server: ServerProcess;

  beforeAll(async () => {
    server = await serveNano(runtime, ["--api-key", KEY]);
  });
  afterAll(async () => expect(await server.stop()).toBe(0));

  async function send(c: Case): Promise<Response> {
    const headers: Record<string, string> = { "Content-Type": "application/json", Authorization: `Bearer ${KEY}`, ...c.headers };
    for (const [k, v] of Object.entries(headers)) if (v === undefined) delete headers[k];
    const body = c.raw ?? (c.body === undefined ? undefined : JSON.stringify(c.body));
    return fetch(server.url + (c.path ?? "/v1/completions"), { method: c.method ?? "POST", headers, body, duplex: "half" } as RequestInit);
  }

  test("hundreds of malformed or hostile requests each get the right 4xx JSON error", async () => {
    const cases = [...fieldCases(), ...rawCases()];
    expect(cases.length).toBeGreaterThanOrEqual(200);
    const failures: string[] = [];
    for (let i = 0; i < cases.length; i += 16) {
      await Promise.all(
        cases.slice(i, i + 16).map(async (c) => {
          const res = await send(c);
          const text = await res.text();
          let body: any = null;
          try {
            body = JSON.parse(text);
          } catch {}
          const err = body?.error;
          const problems = [
            res.status !== c.status && `status ${res.status}, expected ${c.status}`,
            !res.headers.get("content-type")?.startsWith("application/json") && `content-type ${res.headers.get("content-type")}`,
            !(typeof err?.message === "string" && err.message.length > 0) && "no error.message",
            typeof err?.type !== "string" && "no error.type",
            c.param !== undefined && !samePath(err?.param, c.param) && `param ${JSON.stringify(err?.param)}, expected ${JSON.stringify(c.param)}`,
            c.message && !c.message.test(err?.message ?? "") && `message "${err?.message}" does not match ${c.message}`,
            c.allow !== undefined && res.headers.get("allow") !== c.allow && `Allow ${res.headers.get("allow")}, expected ${c.allow}`,
          ].filter(Boolean);
          if (problems.length) failures.push(`${c.name}: ${problems.join("; ")} (${text.slice(0, 200)})`);
        }),
      );
    }
    expect(failures).toEqual([]);
    console.log(`${cases.length} hostile requests answered as expected`);
  });

  test("the server still serves afterwards and no block leaked", async () => {
    const health = await fetch(`${server.url}/health`); // open without a key
    expect(health.status).toBe(200);
    const res = await fetch(`${server.url}/v1/completions`, {
      method: "POST",
      headers: { "Content-Type": "application/json; charset=utf-8", Authorization: `Bearer ${KEY}` },
      body: JSON.stringify({ ...COMPLETION, unknown_field: { ignored: true }, temperature: 0, stop: null, max_tokens: null }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as any;
    expect(body.usage.completion_tokens).toBeGreaterThan(0);
    expect(body.usage.completion_tokens).toBeLessThanOrEqual(16); // completions default
    expect(await metric(server.url, "kvc_kv_blocks_used")).toBe(0);
    expect(await metric(server.url, "vllm:num_requests_running")).toBe(0);
    expect(await metric(server.url, "vllm:num_requests_waiting")).toBe(0);
  });
});
