// What a load and fault test found (issue 22), each kept fixed over real sockets under
// Bun and Deno: stalled or trickling bodies and headers are cut at their timeouts while
// /health stays quick, idle keep-alive connections close, early errors close theirs,
// past the connection cap a clean 503; the timeouts never cut a long generation; a client
// that leaves a non-streamed request cancels it whatever its body's size.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { connect, type Socket } from "node:net";
import { metric, postJson, RUNTIMES, serveNano, startNano, until, type ServerProcess } from "../fixtures/server-helpers.ts";

const KEY = "sk-reliability";
const BODY_TIMEOUT_S = 2;
const HEADER_TIMEOUT_S = 2;
const IDLE_TIMEOUT_S = 2;
const MAX_CONNECTIONS = 350;
/** uWebSockets closes a connection whose headers have not all come in 10 s; Bun ignores --header-timeout */
const headerTimeoutS = (runtime: string) => (runtime === "bun" ? 10 : HEADER_TIMEOUT_S);

/** A raw connection: what it received, and when the server closed it (ms after opening). */
interface RawConnection {
  socket: Socket;
  opened: number;
  received(): string;
  closed: Promise<number>;
}

function open(url: string, first: string): Promise<RawConnection> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    let data = "";
    const opened = performance.now();
    let closedAt: (t: number) => void;
    const closed = new Promise<number>((r) => (closedAt = r));
    const socket = connect(Number(port), hostname, () => {
      socket.write(first);
      resolve({ socket, opened, received: () => data, closed });
    });
    socket.setEncoding("utf8");
    socket.on("data", (d: string) => (data += d));
    socket.on("close", () => closedAt(performance.now() - opened));
    socket.on("error", reject);
  });
}

/** Headers of a 100-byte completion body, then only its first 3 bytes. */
const stalledPost = (key = KEY) =>
  `POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"p`;

const statusOf = (raw: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1] ?? 0);

async function healthMs(url: string): Promise<number> {
  const t0 = performance.now();
  const res = await fetch(`${url}/health`);
  expect(res.status).toBe(200);
  await res.text();
  return performance.now() - t0;
}

describe.each(RUNTIMES)("%s", (runtime) => {
  let server: ServerProcess;

  beforeAll(async () => {
    server = await serveNano(runtime, [
      "--api-key", KEY,
      "--body-timeout", String(BODY_TIMEOUT_S),
      "--header-timeout", String(HEADER_TIMEOUT_S),
      "--idle-timeout", String(IDLE_TIMEOUT_S),
      "--max-connections", String(MAX_CONNECTIONS),
    ]);
  });
  afterAll(async () => expect(await server.stop()).toBe(0));

  test("hundreds of stalled bodies are answered 408 and closed at the body timeout while /health stays quick; stalled headers close too", async () => {
    const headers = await Promise.all(Array.from({ length: 4 }, () => open(server.url, "POST /v1/completions HTTP/1.1\r\nHost: x\r\n")));
    const stalled: RawConnection[] = [];
    for (let i = 0; i < 300; i += 50) stalled.push(...(await Promise.all(Array.from({ length: 50 }, () => open(server.url, stalledPost())))));
    // one body trickles a byte every 300 ms: never idle, still too slow
    const trickle = await open(server.url, stalledPost());
    const timer = setInterval(() => trickle.socket.writable && trickle.socket.write(" "), 300);
    try {
      const health: number[] = [];
      for (let i = 0; i < 5; i++) {
        health.push(await healthMs(server.url));
        await Bun.sleep(200);
      }
      expect(Math.max(...health)).toBeLessThan(1000);
      const closedAfter = await Promise.all([...stalled, trickle].map((c) => c.closed));
      // each was cut at the body timeout, counted from its headers, not before
      expect(Math.min(...closedAfter)).toBeGreaterThan(BODY_TIMEOUT_S * 1000 - 300);
      expect(Math.max(...closedAfter)).toBeLessThan(BODY_TIMEOUT_S * 1000 + 3000);
      for (const c of [...stalled, trickle]) {
        expect(statusOf(c.received())).toBe(408);
        expect(c.received()).toMatch(/connection: close/i);
        expect(c.received()).toContain('"code":"request_timeout"');
      }
      const headersClosed = await Promise.all(headers.map((c) => c.closed));
      expect(Math.max(...headersClosed)).toBeLessThan((headerTimeoutS(runtime) + 5) * 1000);
      expect(await healthMs(server.url)).toBeLessThan(1000);
    } finally {
      clearInterval(timer);
    }
  }, 60_000);

  test("an error answered before the body was read (401, 413, 415) closes the connection at once", async () => {
    const cases: [string, number][] = [
      [stalledPost("sk-wrong"), 401],
      [stalledPost().replace("Content-Length: 100", `Content-Length: ${64 * 2 ** 20}`), 413],
      [stalledPost().replace("application/json", "text/plain"), 415],
    ];
    for (const [first, status] of cases) {
      const c = await open(server.url, first);
      const closedAfter = await c.closed;
      expect(statusOf(c.received())).toBe(status);
      expect(closedAfter).toBeLessThan(1000);
    }
  });

  test("an idle keep-alive connection closes after the idle timeout", async () => {
    const c = await open(server.url, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    const closedAfter = await c.closed;
    expect(statusOf(c.received())).toBe(200);
    expect(c.received()).not.toMatch(/connection: close/i);
    expect(closedAfter).toBeGreaterThan(IDLE_TIMEOUT_S * 1000 - 300);
    // Bun checks its idle timers every 4 s
    expect(closedAfter).toBeLessThan(IDLE_TIMEOUT_S * 1000 + 5000);
  });

  test("past the connection cap: a clean 503 that closes, and service again once the stalled ones are gone", async () => {
    const conns = await Promise.all(Array.from({ length: MAX_CONNECTIONS + 20 }, () => open(server.url, stalledPost())));
    const closedAfter = await Promise.all(conns.map((c) => c.closed));
    const refused = conns.map((c, i) => [c, closedAfter[i]] as const).filter(([c]) => statusOf(c.received()) === 503);
    expect(refused.length).toBeGreaterThanOrEqual(20);
    for (const [c, ms] of refused) {
      expect(ms).toBeLessThan(1000);
      expect(c.received()).toMatch(/connection: close/i);
      expect(c.received()).toMatch(/retry-after: \d+/i);
      expect(c.received()).toContain('"code":"too_many_connections"');
    }
    for (const c of conns) expect([408, 503]).toContain(statusOf(c.received()));
    expect(await healthMs(server.url)).toBeLessThan(1000);
  }, 30_000);

  test("the timeouts never cut a long non-streamed generation, silent for longer than all of them", async () => {
    const t0 = performance.now();
    const res = await postJson(`${server.url}/v1/completions`, { prompt: "Once upon a time", max_tokens: 400, ignore_eos: true, temperature: 0 }, { headers: { Authorization: `Bearer ${KEY}` } });
    expect(res.status).toBe(200);
    const body = (await res.json()) as any;
    expect(body.usage.completion_tokens).toBe(400);
    // the answer was silent for longer than the idle and body timeouts
    expect(performance.now() - t0).toBeGreaterThan(Math.max(IDLE_TIMEOUT_S, BODY_TIMEOUT_S) * 1000 + 500);
  }, 120_000);

  test("a client that leaves a non-streamed request with a large body cancels its generation", async () => {
    const ac = new AbortController();
    const body = { prompt: "Once upon a time", max_tokens: 1800, ignore_eos: true, user: "u".repeat(2000) };
    const pending = postJson(`${server.url}/v1/completions`, body, { signal: ac.signal, headers: { Authorization: `Bearer ${KEY}` } }).catch((e) => e);
    expect(await until(() => metric(server.url, "vllm:num_requests_running"), (n) => n === 1, 20_000)).toBe(1);
    await Bun.sleep(300);
    ac.abort();
    await pending;
    // 1800 tokens take far longer than this on any device this runs on here
    expect(await until(() => metric(server.url, "vllm:num_requests_running"), (n) => n === 0, 3000)).toBe(0);
    expect(await until(() => metric(server.url, "kvc_kv_blocks_used"), (n) => n === 0, 3000)).toBe(0);
  }, 60_000);
});

describe("in process", () => {
  test("a request the context holds but the KV cache cannot is refused at admission, naming max_tokens and the limit; /v1/models reports the limit", async () => {
    const s = await startNano({ engine: { kvMemory: 256 * 2 ** 10 } });
    try {
      const { numBlocks, heads, blockSize } = s.ctx.limits;
      const usable = Math.floor(numBlocks / heads) * blockSize;
      expect(usable).toBeLessThan(400);
      const models = (await (await fetch(`${s.url}/v1/models`)).json()) as any;
      expect(models.data[0].max_model_len).toBe(usable);
      const prompt = Array.from({ length: 100 }, (_, i) => 200 + i);
      const over = await postJson(`${s.url}/v1/completions`, { prompt, max_tokens: usable, ignore_eos: true });
      expect(over.status).toBe(400);
      const err = ((await over.json()) as any).error;
      expect(err.param).toBe("max_tokens");
      expect(err.code).toBe("context_length_exceeded");
      expect(err.message).toContain(`at most ${usable - 100} completion tokens`);
      expect(err.message).toContain(`at most ${usable} tokens a sequence`);
      // chat answers default to the rest of what fits, not of the context
      const chat = await postJson(`${s.url}/v1/chat/completions`, { messages: [{ role: "user", content: "Hi" }], max_tokens: 2000 });
      expect(chat.status).toBe(400);
      // at the limit: every token, none cut short
      const at = (await (await postJson(`${s.url}/v1/completions`, { prompt, max_tokens: usable - 100, ignore_eos: true, temperature: 0 })).json()) as any;
      expect(at.usage.completion_tokens).toBe(usable - 100);
      // compressed, a longer one fits: the estimate holds, and it too runs to the end
      const body = { prompt, max_tokens: usable, ignore_eos: true, temperature: 0, kv_compression: { method: "kvcompress", rate: 4 } };
      const compressed = (await (await postJson(`${s.url}/v1/completions`, body)).json()) as any;
      expect(compressed.usage.completion_tokens).toBe(usable);
      expect(compressed.choices[0].finish_reason).toBe("length");
      expect(await metric(s.url, "kvc_kv_blocks_used")).toBe(0);
    } finally {
      await s.close();
    }
  }, 120_000);

  test("Retry-After grows with the expected wait and spreads refused clients; 429s are counted", async () => {
    const s = await startNano({ maxQueue: 1 });
    try {
      const url = `${s.url}/v1/completions`;
      const run = (max_tokens: number) => postJson(url, { prompt: "Once upon a time", max_tokens, ignore_eos: true, temperature: 0 });
      // the pace of finishes: requests of about a second each, one after another
      const t0 = performance.now();
      for (let i = 0; i < 3; i++) expect((await run(60)).status).toBe(200);
      const each = (performance.now() - t0) / 3000;
      const long = run(300);
      await until(() => metric(s.url, "vllm:num_requests_running"), (n) => n === 1, 10_000);
      const refused = await Promise.all([run(4), run(4), run(4), run(4)]);
      const waits = refused.map((r) => (expect(r.status).toBe(429), Number(r.headers.get("retry-after"))));
      await long;
      console.log(`Retry-After of 4 refused clients: ${waits.join(", ")} s (requests of ${each.toFixed(2)} s)`);
      // each refused client after the first waits longer, by about the pace of finishes
      for (let i = 1; i < waits.length; i++) expect(waits[i]).toBeGreaterThanOrEqual(waits[i - 1]);
      expect(waits[3]).toBeGreaterThan(waits[0]);
      expect(waits[3]).toBeGreaterThanOrEqual(Math.floor(4 * each * 0.5));
      expect(await metric(s.url, "kvc_requests_queue_full_total")).toBe(4);
    } finally {
      await s.close();
    }
  }, 120_000);

  test("CORS is off unless --cors-origin; then preflights and answers carry the allowed origin", async () => {
    const preflight = (url: string, origin: string) =>
      fetch(`${url}/v1/chat/completions`, { method: "OPTIONS", headers: { Origin: origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization, content-type" } });
    const off = await startNano({ apiKey: KEY });
    try {
      const r = await preflight(off.url, "https://app.example");
      expect(r.headers.get("access-control-allow-origin")).toBeNull();
      expect(r.status).toBe(401); // no CORS: a preflight is a request like any other
    } finally {
      await off.close();
    }
    const on = await startNano({ apiKey: KEY, corsOrigins: ["https://app.example"] });
    try {
      const ok = await preflight(on.url, "https://app.example");
      expect(ok.status).toBe(204);
      expect(ok.headers.get("access-control-allow-origin")).toBe("https://app.example");
      expect(ok.headers.get("access-control-allow-headers")?.toLowerCase()).toContain("authorization");
      expect((await preflight(on.url, "https://evil.example")).headers.get("access-control-allow-origin")).toBeNull();
      const models = await fetch(`${on.url}/v1/models`, { headers: { Origin: "https://app.example", Authorization: `Bearer ${KEY}` } });
      expect(models.status).toBe(200);
      expect(models.headers.get("access-control-allow-origin")).toBe("https://app.example");
      expect(models.headers.get("access-control-expose-headers")).toContain("X-Request-Id");
    } finally {
      await on.close();
    }
  });
});
