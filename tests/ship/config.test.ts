// kvc serve's settings: flags, KVC_* environment variables and defaults (flags
// win), every bad one reported at once with where it came from; the help of every
// command; and the README's settings table against the settings the code has.
import { expect, test } from "bun:test";
import { spawnSync } from "bun";
import { readFileSync } from "node:fs";
import { resolveServeConfig, SERVE_SETTINGS } from "../../cli/serve-config.ts";
import { DEFAULTS } from "../../routes/server.ts";
import { ROOT } from "../fixtures/helpers.ts";
import { KVC, NANO, spawnServer } from "../fixtures/server-helpers.ts";

const noDefaultModel = () => "(embedded)";
const envOf = (vars: Record<string, string>) => (name: string) => vars[name];

test("defaults, then the environment, then flags", () => {
  expect(resolveServeConfig({}, envOf({}), noDefaultModel)).toEqual({
    modelDir: "(embedded)",
    host: DEFAULTS.host,
    port: DEFAULTS.port,
    apiKey: null,
    kvMemory: undefined,
    maxQueue: DEFAULTS.maxQueue,
    maxBodyBytes: DEFAULTS.maxBodyBytes,
    logPrompts: false,
    prefixCaching: true,
    connections: { headerTimeoutS: DEFAULTS.headerTimeoutS, bodyTimeoutS: DEFAULTS.bodyTimeoutS, idleTimeoutS: DEFAULTS.idleTimeoutS, maxConnections: DEFAULTS.maxConnections },
    corsOrigins: [],
    warmUp: true,
    compression: {},
  });
  const env = envOf({
    KVC_MODEL: NANO,
    KVC_HOST: "0.0.0.0",
    KVC_PORT: "9000",
    KVC_API_KEY: "sk-env",
    KVC_KV_MEMORY: "128MiB",
    KVC_QUANTIZE: "q4_k",
    KVC_MAX_QUEUE: "8",
    KVC_MAX_BODY: "1MiB",
    KVC_LOG_PROMPTS: "yes",
    KVC_NO_PREFIX_CACHING: "1",
    KVC_KV_METHOD: "kvcrush",
    KVC_KV_RATE: "4",
    KVC_KV_PROTECTED_WINDOW: "16",
    KVC_KV_COMPRESS_ONCE: "1",
    KVC_KV_CRUSH_ANCHOR: "alternate",
    KVC_HEADER_TIMEOUT: "5",
    KVC_BODY_TIMEOUT: "20",
    KVC_IDLE_TIMEOUT: "7",
    KVC_MAX_CONNECTIONS: "300",
    KVC_CORS_ORIGIN: "https://a.example, http://b.example:3000",
    KVC_NO_WARMUP: "1",
  });
  expect(resolveServeConfig({}, env, noDefaultModel)).toEqual({
    modelDir: NANO,
    host: "0.0.0.0",
    port: 9000,
    apiKey: "sk-env",
    kvMemory: 128 * 2 ** 20,
    quantize: "q4_k",
    maxQueue: 8,
    maxBodyBytes: 2 ** 20,
    logPrompts: true,
    prefixCaching: false,
    connections: { headerTimeoutS: 5, bodyTimeoutS: 20, idleTimeoutS: 7, maxConnections: 300 },
    corsOrigins: ["https://a.example", "http://b.example:3000"],
    warmUp: false,
    compression: { method: "kvcrush", rate: 4, protectedWindow: 16, compressOnce: true, crushAnchor: "alternate" },
  });
  const flags = { port: "9100", "kv-rate": "2", "api-key": "sk-flag", "max-queue": "3" };
  expect(resolveServeConfig(flags, env, noDefaultModel)).toMatchObject({ port: 9100, apiKey: "sk-flag", maxQueue: 3, compression: { method: "kvcrush", rate: 2 } });
  // an empty variable counts as unset
  expect(resolveServeConfig({}, envOf({ KVC_PORT: "" }), noDefaultModel).port).toBe(DEFAULTS.port);
});

test("every bad setting is reported at once, named as it was given", () => {
  const env = envOf({ KVC_PORT: "http", KVC_MAX_QUEUE: "0", KVC_LOG_PROMPTS: "maybe", KVC_MODEL: "/nonexistent/model", KVC_QUANTIZE: "q5_k", KVC_KV_MEMORY: "lots", KVC_HOST: "bad host" });
  let message = "";
  try {
    resolveServeConfig({ "kv-rate": "0.5", "max-body": "10" }, env, noDefaultModel);
  } catch (e) {
    message = (e as Error).message;
  }
  const lines = message.split("\n");
  expect(lines[0]).toBe("bad settings:");
  expect(lines.slice(1).map((l) => l.trim()).sort()).toEqual(
    [
      'KVC_MODEL: is neither a folder nor a .gguf file (got "/nonexistent/model")',
      'KVC_QUANTIZE: must be one of q8_0, q4_0, q4_k (got "q5_k")',
      'KVC_HOST: must be a host name or an IP address (got "bad host")',
      'KVC_PORT: must be an integer in [0, 65535] (got "http")',
      `KVC_KV_MEMORY: cannot read "lots" as a size; use e.g. 512MiB or 2GiB (got "lots")`,
      'KVC_MAX_QUEUE: must be an integer in [1, 1000000000] (got "0")',
      '--max-body: must be at least 1KiB (got "10")',
      'KVC_LOG_PROMPTS: must be one of 1, true, yes, on, 0, false, no, off (got "maybe")',
      "--kv-rate: Invalid value: Expected >=1 but received 0.5",
    ].sort(),
  );
  expect(() => resolveServeConfig({}, envOf({ KVC_KV_METHOD: "snapkv" }), noDefaultModel)).toThrow("KVC_KV_METHOD: snapkv needs a budget");
  expect(() => resolveServeConfig({}, envOf({ KVC_KV_COMPRESS_ONCE: "sometimes" }), noDefaultModel)).toThrow(/^KVC_KV_COMPRESS_ONCE: must be one of/);
  expect(() => resolveServeConfig({ "kv-crush-base": "streaming" }, envOf({}), noDefaultModel)).toThrow(/^--kv-crush-base: Invalid type/);
  expect(() => resolveServeConfig({ "idle-timeout": "300" }, envOf({}), noDefaultModel)).toThrow('--idle-timeout: must be an integer in [1, 255] (got "300")');
  expect(() => resolveServeConfig({}, envOf({ KVC_BODY_TIMEOUT: "0" }), noDefaultModel)).toThrow("KVC_BODY_TIMEOUT: must be an integer in [1, 3600]");
  expect(() => resolveServeConfig({ "cors-origin": "app.example" }, envOf({}), noDefaultModel)).toThrow(/^--cors-origin: must be "\*" or origins/);
  expect(resolveServeConfig({ "cors-origin": "*" }, envOf({}), noDefaultModel).corsOrigins).toEqual(["*"]);
  expect(() => resolveServeConfig({}, envOf({ KVC_KV_ALLOCATION: "even" }), noDefaultModel)).toThrow(/^KVC_KV_ALLOCATION: Invalid type/);
  expect(resolveServeConfig({ "kv-allocation": "global" }, envOf({}), noDefaultModel).compression.allocation).toBe("global");
});

test("kvc serve reads the environment, a flag beats a bad variable, and a bad one stops it before loading", async () => {
  const bad = spawnSync([...KVC.bun, "serve"], { cwd: ROOT, env: { ...process.env, KVC_PORT: "http", KVC_MAX_QUEUE: "-1" } });
  expect(bad.exitCode).toBe(1);
  const err = bad.stderr.toString();
  expect(err).toContain('KVC_PORT: must be an integer in [0, 65535] (got "http")');
  expect(err).toContain('KVC_MAX_QUEUE: must be an integer');
  expect(err).not.toContain("adapter:"); // nothing loaded
  const s = await spawnServer(KVC.bun, ["--port", "0"], { env: { ...process.env, KVC_PORT: "http", KVC_KV_MEMORY: "64MiB", KVC_API_KEY: "sk-env" } });
  try {
    expect(s.log()).toMatch(/kv cache: \d+ blocks x 16 tokens per \(layer, kv head\) = \d+ tokens/);
    expect(s.log()).toContain("64.0 MiB");
    expect((await fetch(`${s.url}/v1/models`)).status).toBe(401);
    expect((await fetch(`${s.url}/v1/models`, { headers: { Authorization: "Bearer sk-env" } })).status).toBe(200);
  } finally {
    expect(await s.stop()).toBe(0);
  }
});

test("kvc --help names every command, and each command's --help documents its flags", () => {
  const help = spawnSync([...KVC.bun, "--help"], { cwd: ROOT });
  expect(help.exitCode).toBe(0);
  const text = help.stdout.toString();
  const commands = [...text.slice(text.indexOf("commands:")).matchAll(/^ {2}(\w+) {2,}/gm)].map((m) => m[1]).filter((c) => c !== "help");
  expect(commands).toEqual(expect.arrayContaining(["generate", "serve"]));
  for (const c of commands) {
    const r = spawnSync([...KVC.bun, c, "--help"], { cwd: ROOT });
    expect({ c, code: r.exitCode }).toEqual({ c, code: 0 });
    expect(r.stdout.toString()).toContain(`kvc ${c}`);
  }
  const serve = spawnSync([...KVC.bun, "serve", "--help"], { cwd: ROOT }).stdout.toString();
  for (const s of Object.values(SERVE_SETTINGS)) {
    expect(serve).toMatch(new RegExp(`--${s.flag}\\b.*\\b${s.env}\\b`));
  }
});

test("the README's settings table lists exactly the settings serve has", () => {
  const readme = readFileSync(`${ROOT}/README.md`, "utf8");
  const start = readme.indexOf("\n### Settings\n");
  expect(start).toBeGreaterThan(0);
  const section = readme.slice(start, readme.indexOf("\n#", start + 2));
  const rows = [...section.matchAll(/^\| `--([\w-]+)(?: [A-Z]+)?` \| `(KVC_\w+)` \|/gm)].map((m) => [m[1], m[2]]);
  expect(rows.sort()).toEqual(Object.values(SERVE_SETTINGS).map((s) => [s.flag, s.env]).sort());
  expect(section).toContain("KVC_CACHE_DIR");
});
