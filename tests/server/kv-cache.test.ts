// GET /v1/kv_cache/{id} on a real server (kvc-nano, in this process): live while a
// compressed chat streams, the map kept after it ends (equal to usage.kv_cache), behind
// the API key, no prompt text; and the payload of a 32-layer x 8-head x 100k cache stays small.
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { RunningServer } from "../../routes/server.ts";
import { cacheMapBody } from "../../routes/kv-cache.ts";
import { DEFAULT_COMPRESSION } from "../../src/cache/compression.ts";
import { openStream, startNano } from "../fixtures/server-helpers.ts";

const KEY = "sk-map";
let server: RunningServer;
beforeAll(async () => {
  server = await startNano({ apiKey: KEY });
});
afterAll(() => server.close());

const auth = { Authorization: `Bearer ${KEY}` };
const getMap = async (id: string, headers: Record<string, string> = auth) => fetch(`${server.url}/v1/kv_cache/${id}`, { headers });
const levels = (b64: string) => Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));

test("a compressed chat's map while it streams and after it ends", async () => {
  const secret = "Marmalade";
  const s = openStream(`${server.url}/v1/chat/completions`, {
    messages: [{ role: "user", content: `${secret} ${"The Congress shall have power to lay and collect taxes, duties and excises. ".repeat(4)}` }],
    max_tokens: 48,
    temperature: 0,
    ignore_eos: true,
    stream_options: { include_usage: true },
    kv_compression: { method: "kvcompress", rate: 4, protected_window: 8, interval: 8 },
  }, auth);
  await s.gotText;
  const id = s.events[0].id as string;
  const live = await (await getMap(id)).json();
  expect(["running", "finished"]).toContain(live.status);
  const events = await s.done;
  const usage = events.find((e) => e !== "[DONE]" && e.usage)!.usage;

  const res = await getMap(id);
  expect(res.status).toBe(200);
  const text = await res.text();
  expect(text).not.toContain(secret);
  const m = JSON.parse(text);
  expect(m).toMatchObject({ object: "kv_cache.map", id, index: 0, status: "finished", layers: 4, kv_heads: 2, block_size: 16 });
  expect(m.compression).toMatchObject({ method: "kvcompress", rate: 4, protected_window: 8 });
  expect(m.tokens_kept).toHaveLength(8);
  expect(m.blocks).toHaveLength(8);
  expect(m.totals).toEqual({ ...usage.kv_cache, tokens_kept: m.tokens_kept.reduce((a: number, b: number) => a + b, 0) });
  expect(m.blocks.reduce((a: number, b: number) => a + b, 0)).toBe(usage.kv_cache.blocks_used);
  expect(usage.kv_cache.evicted_tokens).toBeGreaterThan(0);
  // every head keeps the newest positions (the protected window) and loses some older ones
  expect(m.positions.heads).toHaveLength(8);
  const bins = m.positions.bins;
  expect(bins).toBe(Math.min(256, m.context_tokens));
  for (const h of m.positions.heads as string[]) {
    const row = levels(h);
    expect(row.length).toBe(bins);
    expect(row[bins - 1]).toBe(255);
    expect(Math.min(...row)).toBeLessThan(255);
  }
});

test("the key guards it; unknown ids are 404; a bad index is 400", async () => {
  expect((await getMap("chatcmpl-x", {})).status).toBe(401);
  const r = await getMap("chatcmpl-nothing");
  expect(r.status).toBe(404);
  expect((await r.json()).error.message).toContain("chatcmpl-nothing");
  expect((await fetch(`${server.url}/v1/kv_cache/x?index=-1`, { headers: auth })).status).toBe(400);
});

test("a 32-layer x 8-head x 100k-token cache maps to under 128 KiB", async () => {
  const layers = 32, kvHeads = 8, heads = layers * kvHeads, context = 100_000, bins = 256;
  // every head keeps a scattered eighth of the positions
  const survival = new Uint32Array(heads * bins);
  for (let i = 0; i < survival.length; i++) survival[i] = (i * 2654435761) % 97;
  const kept = Int32Array.from({ length: heads }, () => context / 8);
  const view = {
    status: "running" as const,
    compression: { ...DEFAULT_COMPRESSION, method: "kvcompress" as const, rate: 8 },
    kv: { blocksUsed: heads * 782, blocksUncompressed: heads * 6250, tokensKept: heads * 12500, contextTokens: context, compressionRate: 8, evictedTokens: heads * 87500 },
    heads: { context, tokensKept: kept, blocks: kept.map((k) => Math.ceil(k / 16)), bins, survival: Promise.resolve(survival) },
  };
  const body = JSON.stringify(await cacheMapBody("chatcmpl-big", 0, view, { layers, kvHeads, blockSize: 16 }));
  expect(body.length).toBeLessThan(128 * 1024);
  expect(JSON.parse(body).positions.heads).toHaveLength(heads);
});
