// Shared by the server tests: a real server on kvc-nano (port 0), raw SSE parsing,
// and the /metrics numbers the tests watch.
import { expect } from "bun:test";
import { startServer, type RunningServer, type StartOptions } from "../src/server/server.ts";
import { ROOT } from "./helpers.ts";

export const NANO = `${ROOT}/models/kvc-nano`;

export function startNano(o: Partial<StartOptions> = {}): Promise<RunningServer> {
  return startServer({ modelDir: NANO, host: "127.0.0.1", port: 0, engine: { kvMemory: 64 * 2 ** 20 }, ...o });
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
export function openStream(url: string, body: object) {
  const ac = new AbortController();
  const events: any[] = [];
  let firstText: () => void;
  const gotText = new Promise<void>((r) => (firstText = r));
  const done = (async () => {
    const res = await postJson(url, { ...body, stream: true }, { signal: ac.signal });
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
