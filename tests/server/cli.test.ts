// `kvc serve` as a user runs it: under Bun and under Deno as a subprocess on a free
// port, graceful shutdown on SIGTERM, flag errors; and the in-process close that
// cancels streams still running.
import { expect, test } from "bun:test";
import { spawnSync } from "bun";
import { ROOT } from "../fixtures/helpers.ts";
import { KVC, metric, openStream, postJson, serveNano, sseData, startNano, streamedText, until } from "../fixtures/server-helpers.ts";

const chat = (content: string, maxTokens: number) => ({ messages: [{ role: "user", content }], max_tokens: maxTokens, temperature: 0, ignore_eos: true });

test("bun: startup lines, a stream, and SIGTERM lets it finish", async () => {
  const s = await serveNano("bun");
  expect(s.log()).toMatch(/adapter: .*\n.*model: .*\n.*kv cache: .*\n.*serving kvc-nano with Bun\.serve on http:\/\/127\.0\.0\.1:\d+/);
  const stream = openStream(`${s.url}/v1/chat/completions`, chat("Say hello.", 24));
  await stream.gotText;
  s.proc.kill("SIGTERM");
  const events = await stream.done;
  expect(events.at(-1)).toBe("[DONE]");
  expect(events.at(-2).choices[0].finish_reason).toBe("length");
  expect(await s.proc.exited).toBe(0);
  expect(s.log()).toContain("SIGTERM");
});

test("deno: the same server streams a chat answer and sees clients leave", async () => {
  const s = await serveNano("deno");
  try {
    expect(s.log()).toContain("via wgpu (Deno)");
    expect(s.log()).toMatch(/serving kvc-nano with Deno node:http on http:\/\/127\.0\.0\.1:\d+/);
    const res = await postJson(`${s.url}/v1/chat/completions`, { ...chat("Tell me about the Union.", 12), stream: true, stream_options: { include_usage: true } });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const events = sseData(await res.text());
    expect(events[0].choices[0].delta.role).toBe("assistant");
    expect(streamedText(events).length).toBeGreaterThan(0);
    expect(events.at(-2).usage.completion_tokens).toBe(12);
    expect(events.at(-1)).toBe("[DONE]");
    const bad = await postJson(`${s.url}/v1/completions`, { prompt: "x", kv_compression: { rate: 0.5 } });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as any).error.param).toBe("kv_compression.rate");
    // a stream and a whole request whose clients leave: both sequences are cancelled
    const long = { prompt: "Once upon a time", max_tokens: 1500, ignore_eos: true };
    const stream = openStream(`${s.url}/v1/completions`, long);
    await stream.gotText;
    stream.abort();
    expect(await until(() => metric(s.url, "kvc_kv_blocks_used"), (n) => n === 0, 3000)).toBe(0);
    const ac = new AbortController();
    const whole = postJson(`${s.url}/v1/completions`, long, { signal: ac.signal }).catch((e) => e);
    await until(() => metric(s.url, "kvc_kv_blocks_used"), (n) => n > 0, 10_000);
    ac.abort();
    expect(await whole).toBeInstanceOf(Error);
    expect(await until(() => metric(s.url, "kvc_kv_blocks_used"), (n) => n === 0, 3000)).toBe(0);
    expect(await metric(s.url, "vllm:num_requests_running")).toBe(0);
  } finally {
    s.proc.kill("SIGTERM");
    expect(await s.proc.exited).toBe(0);
  }
});

test("closing the server cancels streams still running and ends them with an error event", async () => {
  const server = await startNano();
  const stream = openStream(`${server.url}/v1/completions`, { prompt: "Once upon a time", max_tokens: 1500, ignore_eos: true });
  await stream.gotText;
  await server.close(100);
  const events = await stream.done;
  expect(events.at(-1)).toBe("[DONE]");
  expect(events.at(-2).error.code).toBe("server_shutdown");
  expect(await fetch(`${server.url}/health`).catch((e) => e)).toBeInstanceOf(Error);
});

test("bad serve flags fail with a clear message", () => {
  for (const [args, msg] of [
    [["--kv-rate", "0.5"], /--kv-rate: Invalid value: Expected >=1/],
    [["--kv-method", "fast"], /--kv-method: Invalid type/],
    [["--kv-method", "snapkv"], /needs a budget: --kv-rate or --kv-max-tokens/],
    [["--kv-crush-ratio", "1"], /--kv-crush-ratio/],
    [["--kv-interval", "x"], /--kv-interval/],
    [["--port", "http"], /--port: must be an integer in \[0, 65535\] \(got "http"\)/],
    [["--max-queue", "0"], /--max-queue: must be an integer/],
    [["--kv-memory", "lots"], /--kv-memory: cannot read "lots" as a size/],
    [["--frobnicate"], /Unknown option '--frobnicate'/],
  ] as const) {
    const r = spawnSync([...KVC.bun, "serve", ...args], { cwd: ROOT });
    expect(r.exitCode).toBe(1);
    expect(r.stderr.toString()).toMatch(msg);
  }
  const help = spawnSync(["bun", "cli/main.ts", "serve", "--help"], { cwd: ROOT });
  expect(help.exitCode).toBe(0);
  expect(help.stdout.toString()).toContain("--max-queue N");
  expect(spawnSync(["bun", "cli/main.ts", "help"], { cwd: ROOT }).stdout.toString()).toContain("serve ");
});
