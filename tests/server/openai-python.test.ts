// The Python openai SDK (scripts/openai_check.py) against `kvc serve` under Bun and Deno:
// logprobs, response_format and tools, streamed and whole. scripts/setup.sh installs the
// package where python3 is; without it the test says so and is skipped.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { ROOT } from "../fixtures/helpers.ts";
import { RUNTIMES, serveNano, type ServerProcess } from "../fixtures/server-helpers.ts";

const hasPythonOpenai = spawnSync("python3", ["-c", "import openai"]).status === 0;
if (!hasPythonOpenai) console.log("python3 with the openai package not found: the Python SDK test is skipped");

describe.skipIf(!hasPythonOpenai).each(RUNTIMES)("%s", (runtime) => {
  let server: ServerProcess;
  beforeAll(async () => {
    server = await serveNano(runtime);
  });
  afterAll(async () => expect(await server.stop()).toBe(0));

  test("scripts/openai_check.py passes", () => {
    const r = spawnSync("python3", [`${ROOT}/scripts/openai_check.py`, server.url], { encoding: "utf8", timeout: 300_000 });
    expect(r.stderr).toBe("");
    expect(r.stdout.trim()).toBe("ok");
    expect(r.status).toBe(0);
  });
});
