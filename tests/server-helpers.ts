// Shared by the server tests: a real server on kvc-nano (port 0), in this process
// or as a `kvc serve` process under Bun or Deno; raw SSE parsing, and the /metrics
// numbers the tests watch.
import { expect } from "bun:test";
import type { Subprocess } from "bun";
import { startServer, type RunningServer, type StartOptions } from "../src/server/server.ts";
import { ROOT } from "./helpers.ts";

export const NANO = `${ROOT}/models/kvc-nano`;

export function startNano(o: Partial<StartOptions> = {}): Promise<RunningServer> {
  return startServer({ modelDir: NANO, host: "127.0.0.1", port: 0, engine: { kvMemory: 64 * 2 ** 20 }, ...o });
}

export type Runtime = "bun" | "deno";
/** The runtimes the HTTP end-to-end tests run `kvc serve` under; KVC_E2E_RUNTIMES=bun picks one. */
export const RUNTIMES = (process.env.KVC_E2E_RUNTIMES ?? "bun,deno").split(",").map((r) => r.trim()) as Runtime[];
for (const r of RUNTIMES) if (r !== "bun" && r !== "deno") throw new Error(`KVC_E2E_RUNTIMES: unknown runtime "${r}"`);
/** `kvc` from the source tree under each runtime */
export const KVC: Record<Runtime, string[]> = { bun: ["bun", "src/main.ts"], deno: ["deno", "run", "-A", "src/main.ts"] };

export interface ServerProcess {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  url: string;
  /** stderr so far */
  log(): string;
  /** SIGTERM, then the exit code */
  stop(): Promise<number>;
}

/** Starts `<kvc> serve <args>` and reads its stderr until it says where it listens. */
export async function spawnServer(kvc: string[], args: string[], o: { cwd?: string; env?: Record<string, string | undefined> } = {}): Promise<ServerProcess> {
  const proc = Bun.spawn([...kvc, "serve", ...args], { cwd: o.cwd ?? ROOT, env: o.env ?? process.env, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  let log = "";
  const reader = proc.stderr.pipeThrough(new TextDecoderStream()).getReader();
  const listening = / on (http:\/\/\S+)/;
  const deadline = Date.now() + 120_000;
  while (!listening.test(log)) {
    const { done, value } = await reader.read();
    if (done || Date.now() > deadline) {
      proc.kill();
      throw new Error(`kvc serve did not start:\n${log}`);
    }
    log += value;
  }
  (async () => {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      log += value;
    }
  })();
  const stop = () => (proc.kill("SIGTERM"), proc.exited);
  return { proc, url: listening.exec(log)![1], log: () => log, stop };
}

/** `kvc serve` on kvc-nano under `runtime`: a free port, a 64 MiB cache, and `args`. */
export function serveNano(runtime: Runtime, args: string[] = []): Promise<ServerProcess> {
  return spawnServer(KVC[runtime], ["--port", "0", "--kv-memory", "64MiB", ...args]);
}

export async function postJson(url: string, body: unknown, init: RequestInit = {}): Promise<Response> {
  return fetch(url, {
    method: "POST",
    ...init,
    headers: { "Content-Type": "application/json", ...(init.headers as Record<string, string>) },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

/** The `data:` payloads of an SSE body, in order ("[DONE]" kept as a string). */
export function sseData(text: string): (any | "[DONE]")[] {
  expect(text.endsWith("\n\n")).toBe(true);
  return text
    .split("\n\n")
    .filter((e) => e.length)
    .map((e) => {
      expect(e.startsWith("data: ")).toBe(true);
      const d = e.slice(6);
      return d === "[DONE]" ? d : JSON.parse(d);
    });
}

/** Text of completion or chat chunks joined. */
export function streamedText(events: any[]): string {
  return events
    .filter((e) => e !== "[DONE]" && e.choices?.length)
    .map((e) => e.choices[0].text ?? e.choices[0].delta?.content ?? "")
    .join("");
}

/** One sample of /metrics by name (labels ignored). */
export async function metric(base: string, name: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
  if (!line) throw new Error(`metric ${name} not found`);
  return Number(line.slice(line.lastIndexOf(" ") + 1));
}

/** Polls until `f` holds or `ms` pass; returns the last value of `read`. */
export async function until<T>(read: () => Promise<T>, f: (x: T) => boolean, ms: number): Promise<T> {
  const deadline = Date.now() + ms;
  let x = await read();
  while (!f(x) && Date.now() < deadline) {
    await Bun.sleep(50);
    x = await read();
  }
  return x;
}

/** A streaming request read event by event, so a test can stop it midway. */
export function openStream(url: string, body: object, headers: Record<string, string> = {}) {
  const ac = new AbortController();
  const events: any[] = [];
  let firstText: () => void;
  const gotText = new Promise<void>((r) => (firstText = r));
  const done = (async () => {
    const res = await postJson(url, { ...body, stream: true }, { signal: ac.signal, headers });
    if (res.status !== 200) throw new Error(`status ${res.status}: ${await res.text()}`);
    const reader = res.body!.getReader();
    const utf8 = new TextDecoder();
    let buf = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buf += utf8.decode(value, { stream: true });
      let i: number;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const e = buf.slice(0, i);
        buf = buf.slice(i + 2);
        expect(e.startsWith("data: ")).toBe(true);
        events.push(e === "data: [DONE]" ? "[DONE]" : JSON.parse(e.slice(6)));
        if (streamedText(events)) firstText!();
      }
    }
    return events;
  })();
    done.catch(() => {}); // handled here too: callers await many streams one after another
  return { events, gotText, done, abort: () => ac.abort() };
}
