// What an operator sees of a running kvc serve, under Bun and under Deno: the
// startup lines, X-Request-Id (the client's or a new one), GET /version, and one
// JSON log line per request on stderr with tokens, KV compression and timings,
// written when a stream has ended, never with the prompt unless --log-prompts.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import type { RunningServer } from "../../routes/server.ts";
import { ROOT } from "../fixtures/helpers.ts";
import { openStream, postJson, RUNTIMES, serveNano, startNano, until, type ServerProcess } from "../fixtures/server-helpers.ts";

const VERSION = JSON.parse(readFileSync(`${ROOT}/package.json`, "utf8")).version;
const SECRET = "Zebra quokka marmalade";
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The JSON lines of a log (startup lines are text). */
const entries = (log: string): any[] => log.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));

describe.each(RUNTIMES)("%s", (runtime) => {
  let server: ServerProcess;
  const logged = (id: string) => until(async () => entries(server.log()).find((e) => e.id === id), (e) => e !== undefined, 10_000);

  beforeAll(async () => {
    server = await serveNano(runtime);
  });
  afterAll(async () => expect(await server.stop()).toBe(0));

  test("startup prints the adapter, the model and the cache in blocks and tokens", () => {
    const log = server.log();
    expect(log).toMatch(new RegExp(`adapter: .+ via ${runtime === "bun" ? "Dawn \\(dawn\\.node\\)" : "wgpu \\(Deno\\)"}`));
    expect(log).toMatch(/model: LlamaForCausalLM 4 layers/);
    expect(log).toMatch(/kv cache: \d+ blocks x 16 tokens per \(layer, kv head\) = \d+ tokens of full-size context, 64\.0 MiB/);
  });

  test("GET /version names kvc, the runtime, the adapter and the model", async () => {
    const res = await fetch(`${server.url}/version`);
    expect(res.status).toBe(200);
    const v = (await res.json()) as any;
    expect(v).toMatchObject({ name: "kvc", version: VERSION, runtime, model: "kvc-nano" });
    expect(v.runtime_version).toMatch(/^\d+\.\d+\.\d+/);
    expect(v.adapter.length).toBeGreaterThan(0);
    expect(v.webgpu).toBe(runtime === "bun" ? "Dawn (dawn.node)" : "wgpu (Deno)");
  });

  test("X-Request-Id: the client's is echoed, a missing or unusable one is made up", async () => {
    const mine = await postJson(`${server.url}/v1/completions`, { prompt: SECRET, max_tokens: 4, temperature: 0 }, { headers: { "X-Request-Id": "trace-42/a" } });
    expect(mine.status).toBe(200);
    expect(mine.headers.get("x-request-id")).toBe("trace-42/a");
    await mine.arrayBuffer();
    for (const sent of [undefined, "has spaces", "x".repeat(201)]) {
      const res = await fetch(`${server.url}/health`, { headers: sent === undefined ? {} : { "X-Request-Id": sent } });
      expect(res.headers.get("x-request-id")).toMatch(UUID);
    }
    const notFound = await fetch(`${server.url}/nowhere`, { headers: { "X-Request-Id": "trace-43" } });
    expect(notFound.status).toBe(404);
    expect(notFound.headers.get("x-request-id")).toBe("trace-43");
  });

  test("one JSON log line per request: tokens, compression, TTFT, duration, and no prompt text", async () => {
    const whole = await postJson(`${server.url}/v1/completions`, { prompt: SECRET, max_tokens: 6, temperature: 0, ignore_eos: true }, { headers: { "X-Request-Id": "whole-1" } });
    const body = (await whole.json()) as any;
    const w = await logged("whole-1");
    expect(w).toMatchObject({ level: "info", msg: "request", method: "POST", path: "/v1/completions", status: 200, model: "kvc-nano", stream: false, response_id: body.id, finish_reason: "length" });
    expect(w).toMatchObject({ prompt_tokens: body.usage.prompt_tokens, completion_tokens: 6, kv_blocks_used: body.usage.kv_cache.blocks_used, kv_compression_rate: 1, kv_evicted_tokens: 0 });
    expect(new Date(w.time).getTime()).toBeGreaterThan(Date.now() - 60_000);
    expect(w.ttft_ms).toBeGreaterThan(0);
    expect(w.duration_ms).toBeGreaterThanOrEqual(w.ttft_ms);
    expect(w).not.toHaveProperty("prompt");

    // a stream is logged when it has ended, with what compression achieved
    const long = "The President spoke to the Congress about the state of the Union and the war. ".repeat(6);
    const chat = { messages: [{ role: "user", content: long }], max_tokens: 8, temperature: 0, ignore_eos: true, kv_compression: { method: "kvcompress", rate: 4, protected_window: 8 } };
    const events = await openStream(`${server.url}/v1/chat/completions`, chat, { "X-Request-Id": "stream-1" }).done;
    expect(events.at(-1)).toBe("[DONE]");
    const c = await logged("stream-1");
    expect(c).toMatchObject({ status: 200, stream: true, completion_tokens: 8, finish_reason: "length" });
    expect(c.kv_compression_rate).toBeGreaterThan(1);
    expect(c.kv_evicted_tokens).toBeGreaterThan(0);
    expect(c.kv_blocks_used).toBeLessThan(c.kv_blocks_uncompressed);

    // a refused request: its status and error code, no generation fields
    const bad = await postJson(`${server.url}/v1/completions`, { prompt: SECRET, max_tokens: 0 }, { headers: { "X-Request-Id": "bad-1" } });
    expect(bad.status).toBe(400);
    const b = await logged("bad-1");
    expect(b).toMatchObject({ level: "warn", status: 400, error: "invalid_value" });
    expect(b).not.toHaveProperty("prompt_tokens");

    // probes are not logged; nothing anywhere holds the prompt text
    await fetch(`${server.url}/health`, { headers: { "X-Request-Id": "probe-1" } });
    await fetch(`${server.url}/metrics`, { headers: { "X-Request-Id": "probe-2" } });
    await fetch(`${server.url}/version`, { headers: { "X-Request-Id": "version-1" } });
    await logged("version-1");
    expect(entries(server.log()).filter((e) => e.id.startsWith("probe-"))).toEqual([]);
    expect(server.log()).not.toContain(SECRET);
    expect(server.log()).not.toContain("The President spoke");
  });
});

describe("--log-prompts", () => {
  let server: RunningServer;
  const lines: Record<string, unknown>[] = [];
  beforeAll(async () => {
    server = await startNano({ requestLog: (e) => lines.push(e), logPrompts: true });
  });
  afterAll(() => server.close());

  test("puts the prompt as sent (text, token ids or messages) into its line", async () => {
    const messages = [{ role: "user", content: SECRET }];
    for (const [path, body, prompt] of [
      ["/v1/completions", { prompt: SECRET, max_tokens: 2 }, SECRET],
      ["/v1/completions", { prompt: [1, 2, 3], max_tokens: 2 }, [1, 2, 3]],
      ["/v1/chat/completions", { messages, max_tokens: 2 }, messages],
    ] as const) {
      const res = await postJson(`${server.url}${path}`, body, { headers: { "X-Request-Id": `p-${lines.length}` } });
      expect(res.status).toBe(200);
      const id = res.headers.get("x-request-id");
      await res.arrayBuffer();
      const e = await until(async () => lines.find((l) => l.id === id), (l) => l !== undefined, 5000);
      expect(e!.prompt).toEqual(prompt);
    }
  });
});
