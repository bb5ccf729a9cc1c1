// Soak: thousands of mixed requests against one `kvc serve` on 127.0.0.1, with
// clients that leave mid-answer, stalled and trickling bodies, bad bodies, bursts
// past --max-queue and compressed requests. Bounded in count and time. It passes
// when no answer was a 5xx or broken, every KV block is back in the pool at the end
// and the server's RSS stayed flat (the second half grew it by less than --rss-slack).
//
//   bun scripts/soak.ts [--runtime bun|deno] [--requests 3000] [--concurrency 24] [--time-limit 900] [--json]
//                       [--idle-timeout 5] [--no-keepalive] [--server-log FILE] [--rss-slack 0.1]
import { parseArgs } from "node:util";
import { readFileSync } from "node:fs";
import { connect } from "node:net";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const { values: a } = parseArgs({
  options: {
    runtime: { type: "string", default: "bun" },
    requests: { type: "string", default: "3000" },
    concurrency: { type: "string", default: "24" },
    "time-limit": { type: "string", default: "900" },
    "rss-slack": { type: "string", default: "0.1" },
    "idle-timeout": { type: "string", default: "5" },
    "server-log": { type: "string" },
    // a new connection per request (Bun's fetch reuses them otherwise)
    "no-keepalive": { type: "boolean", default: false },
    json: { type: "boolean", default: false },
  },
});
const REQUESTS = Number(a.requests);
const CONCURRENCY = Number(a.concurrency);
const DEADLINE = performance.now() + Number(a["time-limit"]) * 1000;
const BODY_TIMEOUT_S = 2;
const KVC: Record<string, string[]> = { bun: ["bun", "cli/main.ts"], deno: ["deno", "run", "-A", "cli/main.ts"] };
if (!KVC[a.runtime!]) throw new Error(`--runtime: bun or deno (got ${a.runtime})`);

// ---- the server
const proc = Bun.spawn([...KVC[a.runtime!], "serve", "--host", "127.0.0.1", "--port", "0", "--kv-memory", "4MiB", "--max-queue", "48", "--body-timeout", String(BODY_TIMEOUT_S), "--idle-timeout", a["idle-timeout"]!], {
  cwd: ROOT,
  stdin: "ignore",
  stdout: "ignore",
  stderr: "pipe",
});
let serverLog = "";
const logReader = proc.stderr.pipeThrough(new TextDecoderStream()).getReader();
while (!/ on (http:\/\/\S+)/.test(serverLog)) {
  const { done, value } = await logReader.read();
  if (done) throw new Error(`kvc serve did not start:\n${serverLog}`);
  serverLog += value;
}
const BASE = / on (http:\/\/\S+)/.exec(serverLog)![1];
const logFile = a["server-log"] ? Bun.file(a["server-log"]).writer() : null;
logFile?.write(serverLog);
void (async () => {
  for (;;) {
    const { done, value } = await logReader.read(); // drain the request log so the pipe never fills
    if (done) break;
    logFile?.write(value);
  }
  await logFile?.end();
})();
const rssMiB = () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${proc.pid}/status`, "utf8"))?.[1] ?? NaN) / 1024;

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${BASE}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
  return Number(line?.slice(line.lastIndexOf(" ") + 1) ?? NaN);
}

// ---- the requests
const PROMPTS = ["Once upon a time", "The President of the United States", "It is a truth universally acknowledged", "Mr. Darcy said", "The Union is strong"];
type Kind = (typeof KINDS)[number]["kind"];
/** what each kind of client does, and how often (weights) */
const KINDS = [
  { kind: "completion", weight: 20 },
  { kind: "chat-stream", weight: 20 },
  { kind: "compressed-stream", weight: 10 },
  { kind: "seeded", weight: 6 },
  { kind: "leave-stream", weight: 10 },
  { kind: "leave-whole", weight: 8 },
  { kind: "stalled-body", weight: 3 },
  { kind: "trickle-body", weight: 1 },
  { kind: "bad-body", weight: 10 },
  { kind: "health", weight: 6 },
  { kind: "burst", weight: 1 },
] as const;

let rng = 0x2545f491;
const rand = () => ((rng = (rng * 1103515245 + 12345) >>> 0) / 2 ** 32);
const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)];
function pickKind(): Kind {
  let r = rand() * KINDS.reduce((n, k) => n + k.weight, 0);
  for (const k of KINDS) if ((r -= k.weight) < 0) return k.kind;
  return "completion";
}

const statuses = new Map<string, number>();
const problems: string[] = [];
const note = (kind: string, status: number | string) => {
  const key = `${kind} ${status}`;
  statuses.set(key, (statuses.get(key) ?? 0) + 1);
  if (typeof status === "number" && status >= 500) problems.push(`${kind}: ${status}`);
};
const send = (path: string, body: unknown, signal?: AbortSignal) =>
  fetch(BASE + path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal, keepalive: !a["no-keepalive"] } as RequestInit);
let retries = 0;
/** A request as a well-behaved client sends it: on 429 it waits Retry-After (up to 5 s) and tries again, 3 times. */
async function post(path: string, body: unknown, signal?: AbortSignal): Promise<Response> {
  for (let attempt = 0; ; attempt++) {
    const r = await send(path, body, signal);
    if (r.status !== 429 || attempt === 3) return r;
    await r.text();
    retries++;
    await Bun.sleep(Math.min(5, Number(r.headers.get("retry-after") ?? 1)) * 1000);
  }
}

/** A streamed answer read to its end; it must end with [DONE] and hold no error event. */
async function readStream(kind: string, res: Response, leaveAfter?: number) {
  note(kind, res.status);
  if (res.status !== 200) return void (await res.text());
  const reader = res.body!.getReader();
  const utf8 = new TextDecoder();
  let text = "";
  for (let events = 0; ; ) {
    const { done, value } = await reader.read();
    if (done) break;
    text += utf8.decode(value, { stream: true });
    events = text.split("\n\n").length - 1;
    if (leaveAfter !== undefined && events >= leaveAfter) return void (await reader.cancel());
  }
  if (!text.endsWith("data: [DONE]\n\n") || text.includes('"error"')) problems.push(`${kind}: broken stream ${JSON.stringify(text.slice(-200))}`);
}

/** Headers and part of a body over a raw socket; the server must answer 408 and close. */
function slowBody(kind: string, trickle: boolean): Promise<void> {
  const { hostname, port } = new URL(BASE);
  return new Promise((resolve) => {
    let data = "";
    let timer: ReturnType<typeof setInterval> | undefined;
    const t0 = performance.now();
    const s = connect(Number(port), hostname, () => {
      s.write(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{"prompt":`);
      if (trickle) timer = setInterval(() => s.writable && s.write(" "), 250);
    });
    s.setEncoding("utf8");
    s.on("data", (d: string) => (data += d));
    s.on("error", () => {});
    s.on("close", () => {
      clearInterval(timer);
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1] ?? 0);
      note(kind, status || "closed without an answer");
      if (status !== 408 && status !== 503) problems.push(`${kind}: ${status || "no answer"}`);
      if (performance.now() - t0 > (BODY_TIMEOUT_S + 5) * 1000) problems.push(`${kind}: held ${Math.round(performance.now() - t0)} ms`);
      resolve();
    });
  });
}

async function one(kind: Kind) {
  const prompt = pick(PROMPTS);
  const max_tokens = 1 + Math.floor(rand() * 12);
  switch (kind) {
    case "completion":
      return note(kind, (await post("/v1/completions", { prompt, max_tokens, temperature: rand() < 0.5 ? 0 : 0.8 }).then(async (r) => (await r.text(), r))).status);
    case "chat-stream":
      return readStream(kind, await post("/v1/chat/completions", { messages: [{ role: "user", content: prompt }], max_tokens, stream: true, stream_options: { include_usage: true } }));
    case "compressed-stream": {
      const kv_compression = pick([{ method: "kvcompress", rate: 2 }, { method: "snapkv", max_cache_tokens: 16 }, { method: "streaming", rate: 4 }, { method: "kvcrush", rate: 2 }]);
      return readStream(kind, await post("/v1/completions", { prompt: prompt + " " + "and the people ".repeat(20), max_tokens: max_tokens + 8, stream: true, kv_compression }));
    }
    case "seeded":
      return note(kind, (await post("/v1/completions", { prompt, max_tokens, temperature: 1, seed: 7 }).then(async (r) => (await r.text(), r))).status);
    case "leave-stream":
      return readStream(kind, await post("/v1/completions", { prompt, max_tokens: 200, stream: true, ignore_eos: true }), 2 + Math.floor(rand() * 6));
    case "leave-whole": {
      const ac = new AbortController();
      setTimeout(() => ac.abort(), 50 + rand() * 400);
      const r = await post("/v1/chat/completions", { messages: [{ role: "user", content: prompt }], max_tokens: 300, ignore_eos: true, user: "x".repeat(1000) }, ac.signal).then(
        (r) => r.text().then(() => r.status),
        () => "left",
      );
      return note(kind, r);
    }
    case "stalled-body":
      return slowBody(kind, false);
    case "trickle-body":
      return slowBody(kind, true);
    case "bad-body": {
      const bodies = ['{"prompt": ', '{"prompt": ""}', '{"messages": []}', '{"prompt": "x", "max_tokens": -1}', '{"messages":[{"role":"user","content":"x"}],"functions":[{"name":"f"}]}', "[[[[[[", '{"prompt":"x","kv_compression":{"rate":0}}'];
      const path = rand() < 0.5 ? "/v1/completions" : "/v1/chat/completions";
      // one in ten asks a POST route with GET (405)
      const r = await fetch(BASE + path, rand() < 0.1 ? {} : { method: "POST", headers: { "Content-Type": "application/json" }, body: pick(bodies) });
      await r.text();
      return note(kind, r.status);
    }
    case "health":
      return note(kind, (await fetch(`${BASE}/health`).then(async (r) => (await r.text(), r))).status);
    case "burst": {
      // more at once than --max-queue admits: the rest get 429 with Retry-After
      const rs = await Promise.all(Array.from({ length: 60 }, () => send("/v1/completions", { prompt, max_tokens: 8 }).then(async (r) => (await r.text(), r))));
      for (const r of rs) {
        note(kind, r.status);
        if (r.status === 429 && !(Number(r.headers.get("retry-after")) >= 1)) problems.push("burst: 429 without Retry-After");
      }
      return;
    }
  }
}

// ---- the run
const t0 = performance.now();
const rss: { done: number; mib: number }[] = [];
let started = 0;
let done = 0;
const sampler = setInterval(() => rss.push({ done, mib: rssMiB() }), 1000);
async function worker() {
  while (started < REQUESTS && performance.now() < DEADLINE) {
    started++;
    const kind = pickKind();
    try {
      await one(kind);
    } catch (e) {
      problems.push(`${kind}: ${(e as Error).message}`);
    }
    done++;
  }
}
await Promise.all(Array.from({ length: CONCURRENCY }, worker));
clearInterval(sampler);
const seconds = (performance.now() - t0) / 1000;

// every request has ended: the pool must drain to empty
const deadline = performance.now() + 10_000;
let blocks = await metric("kvc_kv_blocks_used");
while (blocks !== 0 && performance.now() < deadline) {
  await Bun.sleep(100);
  blocks = await metric("kvc_kv_blocks_used");
}
const refused = await metric("kvc_requests_queue_full_total");
const generated = await metric("vllm:generation_tokens_total");
proc.kill("SIGTERM");
const exitCode = await proc.exited;

// RSS: the mean of the last quarter of samples against the mean of the second quarter
const quarter = (q: number) => {
  const xs = rss.slice(Math.floor((rss.length * q) / 4), Math.floor((rss.length * (q + 1)) / 4)).map((s) => s.mib);
  return xs.reduce((s, x) => s + x, 0) / Math.max(1, xs.length);
};
const rssMid = quarter(1);
const rssEnd = quarter(3);
const growth = (rssEnd - rssMid) / rssMid;
const summary = {
  runtime: a.runtime,
  requests: done,
  seconds: Math.round(seconds),
  concurrency: CONCURRENCY,
  statuses: Object.fromEntries([...statuses].sort()),
  http_5xx: [...statuses].filter(([k]) => /\s5\d\d$/.test(k)).reduce((n, [, c]) => n + c, 0),
  refused_429: refused,
  retries_after_429: retries,
  generated_tokens: generated,
  kv_blocks_used_at_end: blocks,
  rss_mib: { first: Math.round(rss[0]?.mib ?? NaN), quarters: [0, 1, 2, 3].map((q) => Math.round(quarter(q))), max: Math.round(Math.max(...rss.map((s) => s.mib))) },
  rss_growth_second_half: Math.round(growth * 1000) / 1000,
  server_exit: exitCode,
  problems: problems.slice(0, 20),
  problem_count: problems.length,
};
const ok = summary.http_5xx === 0 && blocks === 0 && growth < Number(a["rss-slack"]) && problems.length === 0 && exitCode === 0;
if (a.json) console.log(JSON.stringify({ ...summary, ok }));
else console.log(JSON.stringify({ ...summary, ok }, null, 2));
process.exit(ok ? 0 : 1);
