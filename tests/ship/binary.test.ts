// The two single-file builds as users get them: `bun run build` (dist/kvc, bun
// build --compile) and `bun run build:deno` (dist/kvc-deno), each copied alone into
// an empty temp folder (no source tree, no node_modules) and run there: the help
// of every command, `generate` giving the transformers golden ids of kvc-nano, and
// `serve` warming up, serving the playground and answering over HTTP until SIGTERM.
import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TextTokenizer } from "../../src/model/tokenizer.ts";
import { SERVE_SETTINGS } from "../../cli/serve-config.ts";
import { hasShared, MESA_SHADER_CACHE_DIR, modelDir, readJsonFile, ROOT, withoutDawnNotices } from "../fixtures/helpers.ts";
import { postJson, spawnServer, untilHealthy } from "../fixtures/server-helpers.ts";

const WORK = mkdtempSync(join(tmpdir(), "kvc-ship-"));
afterAll(() => rmSync(WORK, { recursive: true, force: true }));

/** The environment a user's shell would give: no KVC_* settings, a home and cache of our own. */
function userEnv(home: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("KVC_")) env[k] = v;
  return { ...env, HOME: home, KVC_CACHE_DIR: join(home, "cache"), MESA_SHADER_CACHE_DIR };
}

const ARTIFACTS = [
  { name: "kvc", script: "build", runtime: "bun" },
  { name: "kvc-deno", script: "build:deno", runtime: "deno" },
] as const;

describe.each(ARTIFACTS)("$name", ({ name, script, runtime }) => {
  const out = join(WORK, `out-${name}`);
  const dir = join(WORK, `run-${name}`);
  const bin = join(dir, name);
  const env = userEnv(dir);
  const run = (args: string[]) => {
    const r = spawnSync(bin, args, { cwd: dir, env, encoding: "utf8", timeout: 300_000 });
    return { code: r.status, out: r.stdout, err: r.stderr };
  };

  test(`bun run ${script} builds one file that runs alone in an empty folder`, () => {
    mkdirSync(out, { recursive: true });
    const b = spawnSync("bun", ["run", script, join(out, name)], { cwd: ROOT, encoding: "utf8", timeout: 300_000 });
    expect(b.stderr).not.toContain("error:");
    expect(b.status).toBe(0);
    console.log(b.stdout.trim());
    mkdirSync(dir, { recursive: true });
    copyFileSync(join(out, name), bin);
    expect(statSync(bin).mode & 0o111).not.toBe(0);
    const help = run(["--help"]);
    expect(help.code).toBe(0);
    expect(help.out).toContain("usage: kvc <command>");
    const gen = run(["generate", "--help"]);
    expect(gen.code).toBe(0);
    for (const flag of ["--model", "--prompt", "--prompt-ids", "--messages", "--max-tokens", "--temperature", "--json", "--kv-method"]) expect(gen.out).toContain(flag);
    const serve = run(["serve", "--help"]);
    expect(serve.code).toBe(0);
    for (const s of Object.values(SERVE_SETTINGS)) {
      expect(serve.out).toContain(`--${s.flag}`);
      expect(serve.out).toContain(s.env);
    }
  });

  test.skipIf(!hasShared)("generate gives the transformers golden ids of the embedded kvc-nano", () => {
    const golden = readJsonFile(`${modelDir("kvc-nano")}/golden.json`);
    const story = golden.prompts.find((p: any) => p.name === "story");
    const chat = golden.prompts.find((p: any) => p.kind === "chat");
    for (const [p, input] of [
      [story, ["--prompt", story.text]],
      [chat, ["--messages", JSON.stringify(chat.messages)]],
    ]) {
      const r = run(["generate", ...input, "--max-tokens", String(p.greedy_ids.length), "--ignore-eos", "--json"]);
      expect(withoutDawnNotices(r.err)).toBe("");
      expect(r.code).toBe(0);
      const j = JSON.parse(r.out);
      expect(j.prompt_token_ids).toEqual(p.prompt_ids);
      expect(j.token_ids).toEqual(p.greedy_ids);
    }
    const text = run(["generate", "--prompt", story.text, "--max-tokens", "8"]);
    expect(text.code).toBe(0);
    expect(text.err).toContain(runtime === "bun" ? "via Dawn (dawn.node)" : "via wgpu (Deno)");
  });

  test.skipIf(!hasShared)("serve answers on a free port and stops on SIGTERM", async () => {
    const golden = readJsonFile(`${modelDir("kvc-nano")}/golden.json`);
    const sotu = golden.prompts.find((p: any) => p.name === "sotu");
    const s = await spawnServer([bin], ["--port", "0", "--kv-memory", "64MiB"], { cwd: dir, env });
    try {
      // the warm-up first: 503 warming_up until every pipeline is compiled
      expect((await untilHealthy(s.url)).every((status) => status === 503)).toBe(true);
      // the playground's page and script, from the copies the binary carries
      expect(await (await fetch(`${s.url}/`)).text()).toContain("<title>kvc playground</title>");
      const script = await fetch(`${s.url}/playground/playground.js`);
      expect(script.headers.get("content-type")).toStartWith("text/javascript");
      expect(await script.text()).toContain("/v1/kv_cache/");
      const version = (await (await fetch(`${s.url}/version`)).json()) as any;
      expect(version).toMatchObject({ name: "kvc", version: JSON.parse(readFileSync(`${ROOT}/package.json`, "utf8")).version, runtime, model: "kvc-nano" });
      const res = await postJson(`${s.url}/v1/completions`, { prompt: sotu.prompt_ids, max_tokens: 8, temperature: 0, ignore_eos: true });
      expect(res.status).toBe(200);
      const body = (await res.json()) as any;
      expect(body.usage.completion_tokens).toBe(8);
      expect(body.choices[0].text).toBe(TextTokenizer.load(modelDir("kvc-nano")).decode(sotu.greedy_ids.slice(0, 8)));
      // the grammar engine (xgrammar's wasm) travels inside the binary
      const schema = { type: "object", properties: { ok: { type: "boolean" } }, required: ["ok"], additionalProperties: false };
      const json = await postJson(`${s.url}/v1/chat/completions`, { messages: [{ role: "user", content: "Hi" }], max_tokens: 30, response_format: { type: "json_schema", json_schema: { name: "a", strict: true, schema } } });
      expect(json.status).toBe(200);
      expect(typeof JSON.parse(((await json.json()) as any).choices[0].message.content).ok).toBe("boolean");
    } finally {
      expect(await s.stop()).toBe(0);
    }
  });
});
