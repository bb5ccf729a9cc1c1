// The README's "Serving" examples run as written: the curl -N command and the
// openai SDK script, against a real server process under Bun and under Deno (its
// URL put in place of :8080).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { ROOT } from "../fixtures/helpers.ts";
import { RUNTIMES, serveNano, sseData, streamedText, type ServerProcess } from "../fixtures/server-helpers.ts";

const README_URL = "http://127.0.0.1:8080";

/** The code blocks of the README's Serving section, with their language. */
function servingBlocks(): { lang: string; code: string }[] {
  const readme = readFileSync(`${ROOT}/README.md`, "utf8");
  const start = readme.indexOf("\n## Serving\n");
  expect(start).toBeGreaterThan(0);
  const end = readme.indexOf("\n## ", start + 1);
  const section = readme.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/```(\w+)\n([\s\S]*?)```/g)].map((m) => ({ lang: m[1], code: m[2] }));
}

describe.each(RUNTIMES)("%s", (runtime) => {
  let server: ServerProcess;

  beforeAll(async () => {
    server = await serveNano(runtime);
  });
  afterAll(async () => expect(await server.stop()).toBe(0));

  function pointAtServer(code: string): string {
    expect(code).toContain(README_URL);
    return code.replaceAll(README_URL, server.url);
  }

  async function run(cmd: string[]): Promise<{ code: number; out: string; err: string }> {
    const p = Bun.spawn(cmd, { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    return { code, out, err };
  }

  test("the curl -N example streams a chat answer", async () => {
    const block = servingBlocks().find((b) => b.lang === "sh" && b.code.includes("curl -N"));
    expect(block).toBeDefined();
    const r = await run(["bash", "-c", pointAtServer(block!.code)]);
    expect(r.code).toBe(0);
    const events = sseData(r.out);
    expect(events[0].choices[0].delta.role).toBe("assistant");
    expect(streamedText(events).length).toBeGreaterThan(0);
    expect(events.at(-1)).toBe("[DONE]");
    const usage = events.at(-2).usage;
    expect(usage.completion_tokens).toBeGreaterThan(0);
    expect(Object.keys(usage.kv_cache).sort()).toEqual(["blocks_uncompressed", "blocks_used", "compression_rate", "evicted_tokens"]);
  });

  test("the openai SDK example prints the answer and its usage", async () => {
    const block = servingBlocks().find((b) => b.lang === "ts" && b.code.includes('from "openai"'));
    expect(block).toBeDefined();
    // inside node_modules so that `import "openai"` resolves as in a user's project
    const dir = `${ROOT}/node_modules/.cache/kvc-readme`;
    mkdirSync(dir, { recursive: true });
    writeFileSync(`${dir}/example.ts`, pointAtServer(block!.code));
    const r = await run(["bun", `${dir}/example.ts`]);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(r.out).toContain("prompt_tokens");
    expect(r.out).toContain("kv_cache");
    expect(r.out.split("\n")[0].trim().length).toBeGreaterThan(0);
  });
});
