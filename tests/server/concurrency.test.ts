// Continuous batching over HTTP, against a server process under Bun and under
// Deno: 16 concurrent streams with different KV compression settings each equal
// their run alone (greedy); clients that leave midway get their sequences
// cancelled and every block returns to the pool; a full queue answers 429.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { metric, openStream, postJson, RUNTIMES, serveNano, streamedText, until, type ServerProcess } from "../fixtures/server-helpers.ts";

const MAX_QUEUE = 16;

const TEXTS = [
  "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife. However little known the feelings or views of such a man may be on his first entering a neighbourhood, this truth is so well fixed in the minds of the surrounding families, that he is considered the rightful property of some one or other of their daughters.",
  "Fellow citizens of the Senate and of the House of Representatives: I congratulate you on the favorable prospects of our public affairs. The recent accession of the important State of North Carolina to the Constitution of the United States gives new strength to our union.",
  "Emma Woodhouse, handsome, clever, and rich, with a comfortable home and happy disposition, seemed to unite some of the best blessings of existence; and had lived nearly twenty-one years in the world with very little to distress or vex her.",
  "The state of the Union is strong. Our economy has grown, our schools have improved, and our people have shown again that no challenge is beyond the reach of a free nation that works together toward a common purpose.",
];

// every method and field, plus the KV-Compress fork's top-level fields
const SETTINGS: object[] = [
  {},
  { kv_compression: { method: "none" } },
  { kv_compression: { method: "kvcompress", rate: 2 } },
  { kv_compression: { method: "kvcompress", rate: 4, protected_window: 8 } },
  { kv_compression: { method: "kvcompress", max_cache_tokens: 48, observation_window: 16, interval: 4 } },
  { kv_compression: { method: "kvcompress", rate: 8, compress_once: true } },
  { kv_compression: { method: "snapkv", rate: 2 } },
  { kv_compression: { method: "snapkv", max_cache_tokens: 64, protected_window: 16 } },
  { kv_compression: { method: "streaming", max_cache_tokens: 40, protected_window: 8 } },
  { kv_compression: { method: "streaming", rate: 3 } },
  { kv_compression: { method: "kvcrush", rate: 2, crush_ratio: 0.25, crush_anchor: "mean" } },
  { kv_compression: { method: "kvcrush", rate: 4, crush_ratio: 0.5, crush_anchor: "alternate", crush_base: "snapkv" } },
  { kv_compression: { method: "kvcrush", max_cache_tokens: 48, crush_ratio: 0 } },
  { max_cache_tokens: 64, protected_window_size: 16 },
  { max_cache_tokens: 32, compress_once: true },
  { kv_compression: { rate: 2 } },
];

function finishReason(events: any[]): string | null {
  return events.filter((e) => e !== "[DONE]" && e.choices?.length).at(-1)?.choices[0].finish_reason ?? null;
}

/** Sequences running and waiting, as /metrics tells them. */
async function queued(base: string): Promise<{ running: number; waiting: number }> {
  return { running: await metric(base, "vllm:num_requests_running"), waiting: await metric(base, "vllm:num_requests_waiting") };
}

describe.each(RUNTIMES)("%s", (runtime) => {
  let server: ServerProcess;
  let base: string;

  beforeAll(async () => {
    server = await serveNano(runtime, ["--max-queue", String(MAX_QUEUE)]);
    base = server.url;
  });
  afterAll(async () => expect(await server.stop()).toBe(0));

  /** Request i: chat or completion, one of the texts, one of the settings. */
  function request(i: number, maxTokens: number) {
    const text = TEXTS[i % TEXTS.length];
    const common = { model: "kvc-nano", max_tokens: maxTokens, temperature: 0, ignore_eos: true, ...SETTINGS[i % SETTINGS.length] };
    return i % 2
      ? { url: `${base}/v1/chat/completions`, body: { ...common, messages: [{ role: "user", content: text }] } }
      : { url: `${base}/v1/completions`, body: { ...common, prompt: text } };
  }

  test("16 concurrent streams with different compression equal each run alone", async () => {
    let peak = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) peak = Math.max(peak, (await queued(base)).running);
    })();
    const together = await Promise.all(SETTINGS.map((_, i) => openStream(request(i, 16).url, request(i, 16).body).done));
    sampling = false;
    await sampler;
    expect(peak).toBeGreaterThan(4); // they really shared decode steps
    for (let i = 0; i < SETTINGS.length; i++) {
      expect(together[i].at(-1)).toBe("[DONE]");
      expect(finishReason(together[i])).toBe("length");
      const alone = await openStream(request(i, 16).url, request(i, 16).body).done;
      expect(streamedText(together[i])).toBe(streamedText(alone));
      expect(streamedText(alone).length).toBeGreaterThan(0);
    }
    expect(await metric(base, "kvc_kv_blocks_used")).toBe(0);
  });

  test("clients leaving mid-stream free their blocks; the rest finish", async () => {
    const gen0 = await metric(base, "vllm:generation_tokens_total");
    const streams = SETTINGS.map((_, i) => {
      const leaves = i % 2 === 0;
      const r = request(i, leaves ? 1500 : 24);
      return { leaves, s: openStream(r.url, r.body) };
    });
    const leaving = streams.filter((x) => x.leaves);
    await Promise.all(leaving.map((x) => x.s.gotText));
    expect(await metric(base, "kvc_kv_blocks_used")).toBeGreaterThan(0);
    for (const x of leaving) x.s.abort();
    for (const x of leaving) await x.s.done.catch(() => {});
    for (const x of streams.filter((x) => !x.leaves)) {
      const events = await x.s.done;
      expect(events.at(-1)).toBe("[DONE]");
      expect(finishReason(events)).toBe("length");
    }
    // the 1500-token requests would need many seconds more had they not been cancelled
    expect(await until(() => metric(base, "kvc_kv_blocks_used"), (n) => n === 0, 2000)).toBe(0);
    expect(await metric(base, "vllm:num_requests_running")).toBe(0);
    expect(await metric(base, "vllm:num_requests_waiting")).toBe(0);
    expect((await metric(base, "vllm:generation_tokens_total")) - gen0).toBeLessThan(8 * 24 + 8 * 300);
  });

  test("a non-streaming client that leaves is cancelled too", async () => {
    const ac = new AbortController();
    const r = request(0, 1500);
    const pending = postJson(r.url, r.body, { signal: ac.signal }).catch((e) => e);
    await until(async () => (await queued(base)).running, (n) => n > 0, 10_000);
    ac.abort();
    expect(await pending).toBeInstanceOf(Error);
    expect(await until(() => metric(base, "kvc_kv_blocks_used"), (n) => n === 0, 2000)).toBe(0);
  });

  test("a full queue answers 429 with Retry-After", async () => {
    const streams = Array.from({ length: MAX_QUEUE }, (_, i) => openStream(request(i, 1500).url, request(i, 1500).body));
    await until(async () => Object.values(await queued(base)).reduce((a, b) => a + b), (n) => n === MAX_QUEUE, 10_000);
    const r = request(1, 8);
    const res = await postJson(r.url, r.body);
    expect(res.status).toBe(429);
    expect(res.headers.get("retry-after")).toMatch(/^[1-9]\d*$/); // the expected wait (src/serving/queue-wait.ts)
    const body = (await res.json()) as any;
    expect(body.error.type).toBe("rate_limit_error");
    expect(body.error.message).toContain("--max-queue 16");
    for (const s of streams) s.abort();
    for (const s of streams) await s.done.catch(() => {});
    expect(await until(() => metric(base, "kvc_kv_blocks_used"), (n) => n === 0, 2000)).toBe(0);
    const ok = await postJson(r.url, r.body);
    expect(ok.status).toBe(200);
  });
});
