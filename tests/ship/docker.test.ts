// The Dockerfile without a Docker engine: its stages parsed and checked (a build
// stage, a runtime stage holding only the binary and run as a non-root user, the
// health check on /health), the build context that .dockerignore leaves checked
// against every COPY, the build stage's own steps run here in a temp folder, the
// runtime stage's packages checked against what Dawn loads, and its HEALTHCHECK
// command run against the binary it built.
import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join, relative } from "node:path";
import { MESA_SHADER_CACHE_DIR, ROOT } from "../fixtures/helpers.ts";
import { spawnServer, untilHealthy } from "../fixtures/server-helpers.ts";

interface Instruction {
  cmd: string;
  args: string;
}
interface Stage {
  base: string;
  name: string;
  steps: Instruction[];
}

/** Instructions by stage: comments dropped, `\` continuations joined, as Docker reads them. */
function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  let pending = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line.startsWith("#") || (!line && !pending)) continue;
    if (line.endsWith("\\")) {
      pending += line.slice(0, -1) + " ";
      continue;
    }
    const full = (pending + line).trim();
    pending = "";
    if (!full) continue;
    const [, cmd, args] = /^(\S+)\s*([\s\S]*)$/.exec(full)!;
    const ins = { cmd: cmd.toUpperCase(), args: args.trim() };
    if (ins.cmd === "FROM") {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args)!;
      stages.push({ base: m[1], name: m[2] ?? String(stages.length), steps: [] });
    } else stages.at(-1)!.steps.push(ins);
  }
  return stages;
}

/** COPY's flags, sources and destination (the shell form; this Dockerfile uses no JSON COPY). */
function copyOf(ins: Instruction): { flags: Record<string, string>; sources: string[]; dest: string } {
  const words = ins.args.split(/\s+/);
  const flags: Record<string, string> = {};
  while (words[0]?.startsWith("--")) {
    const [k, v] = words.shift()!.slice(2).split("=");
    flags[k] = v;
  }
  return { flags, sources: words.slice(0, -1), dest: words.at(-1)! };
}

/** .dockerignore as Docker applies it: the last pattern matching a path or one of its parents decides. */
function contextFiles(): string[] {
  const patterns = readFileSync(join(ROOT, ".dockerignore"), "utf8")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"))
    .map((p) => ({ keep: p.startsWith("!"), glob: new Bun.Glob(p.replace(/^!/, "").replace(/^\/+|\/+$/g, "")) }));
  const excluded = (rel: string) => {
    const parts = rel.split("/");
    let out = false;
    for (const p of patterns) {
      if (parts.some((_, i) => p.glob.match(parts.slice(0, i + 1).join("/")))) out = !p.keep;
    }
    return out;
  };
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
      const rel = dir ? `${dir}/${e.name}` : e.name;
      if (e.name === ".git" || e.name === "node_modules") {
        expect(excluded(rel)).toBe(true);
        continue;
      }
      if (e.isDirectory()) walk(rel);
      else if (!excluded(rel)) files.push(rel);
    }
  };
  walk("");
  return files.sort();
}

const dockerfile = parseDockerfile(readFileSync(join(ROOT, "Dockerfile"), "utf8"));
const stage = (name: string) => dockerfile.find((s) => s.name === name)!;
const steps = (s: Stage, cmd: string) => s.steps.filter((i) => i.cmd === cmd);
/** what a COPY source names in the context: a file, a folder's files, or a glob */
const copied = (files: string[], src: string) => files.filter((f) => f === src || f.startsWith(`${src.replace(/\/$/, "")}/`) || new Bun.Glob(src).match(f));

test("two stages: build, then a runtime that holds only the binary and runs as a non-root user", () => {
  expect(dockerfile.map((s) => s.name)).toEqual(["build", "runtime"]);
  const runtime = stage("runtime");
  const copies = steps(runtime, "COPY").map(copyOf);
  expect(copies).toEqual([{ flags: { from: "build" }, sources: ["/app/dist/kvc"], dest: "/usr/local/bin/kvc" }]);
  expect(JSON.parse(steps(runtime, "ENTRYPOINT")[0].args)).toEqual(["kvc"]);
  expect(JSON.parse(steps(runtime, "CMD")[0].args)).toEqual(["serve"]);
  const user = steps(runtime, "USER").at(-1)?.args;
  expect(user).toBeDefined();
  expect(["root", "0"]).not.toContain(user!.split(":")[0]);
  // the user exists: made by a RUN before USER
  expect(steps(runtime, "RUN").some((r) => new RegExp(`useradd .*\\b${user}$`).test(r.args))).toBe(true);
  const env = Object.fromEntries(steps(runtime, "ENV").flatMap((e) => e.args.split(/\s+/).map((kv) => kv.split("="))));
  expect(env).toMatchObject({ KVC_HOST: "0.0.0.0", KVC_PORT: "8080" });
  expect(env.NVIDIA_DRIVER_CAPABILITIES.split(",")).toEqual(expect.arrayContaining(["compute", "graphics"]));
  expect(steps(runtime, "EXPOSE").map((e) => e.args)).toEqual([env.KVC_PORT]);
  expect(steps(runtime, "HEALTHCHECK")[0].args).toContain("/health");
  // the build stage installs the bun that scripts/setup.sh installs
  const bunVersion = /bun@([\d.]+)/.exec(readFileSync(join(ROOT, "scripts/setup.sh"), "utf8"))![1];
  expect(steps(stage("build"), "RUN")[0].args).toContain(`bun@${bunVersion}`);
});

test("every COPY finds its files in the build context, which stays small", () => {
  const files = contextFiles();
  for (const c of steps(stage("build"), "COPY").map(copyOf)) {
    expect(c.flags).toEqual({});
    for (const src of c.sources) expect({ src, found: copied(files, src).length > 0 }).toEqual({ src, found: true });
  }
  expect(files.filter((f) => /^(tests|node_modules|dist|\.git)\//.test(f))).toEqual([]);
  const bytes = files.reduce((n, f) => n + statSync(join(ROOT, f)).size, 0);
  console.log(`build context: ${files.length} files, ${(bytes / 2 ** 20).toFixed(1)} MiB`);
  expect(bytes).toBeLessThan(16 * 2 ** 20);
});

describe("the build stage run here", () => {
  const app = mkdtempSync(join(tmpdir(), "kvc-docker-"));
  let server: Awaited<ReturnType<typeof spawnServer>> | null = null;
  afterAll(async () => {
    await server?.stop();
    rmSync(app, { recursive: true, force: true });
  });

  test("its COPYs and RUNs (bun install, bun run build) make the binary the runtime stage copies", () => {
    const build = stage("build");
    const files = contextFiles();
    let workdir: string | null = null;
    for (const s of build.steps) {
      if (s.cmd === "WORKDIR") workdir = s.args;
      // RUNs before WORKDIR set up the system (apt, bun): scripts/setup.sh did that here
      if (workdir === null) continue;
      const at = (p: string) => join(app, p.startsWith("/") ? relative(workdir!, p) : p);
      if (s.cmd === "COPY") {
        const { sources, dest } = copyOf(s);
        for (const src of sources) {
          const isDir = existsSync(join(ROOT, src)) && statSync(join(ROOT, src)).isDirectory();
          for (const f of copied(files, src)) {
            // as Docker copies: a folder's contents into dest; a file (or glob match) to dest/ or as dest
            const target = isDir ? join(at(dest), relative(src, f)) : dest.endsWith("/") || sources.length > 1 ? join(at(dest), basename(f)) : at(dest);
            mkdirSync(dirname(target), { recursive: true });
            cpSync(join(ROOT, f), target);
          }
        }
      } else if (s.cmd === "RUN") {
        const r = spawnSync("bash", ["-c", s.args], { cwd: app, encoding: "utf8", timeout: 300_000 });
        expect({ run: s.args, code: r.status, err: r.status ? r.stderr : "" }).toEqual({ run: s.args, code: 0, err: "" });
      }
    }
    expect(workdir).toBe("/app");
    const from = copyOf(steps(stage("runtime"), "COPY")[0]).sources[0];
    const bin = join(app, relative(workdir!, from));
    expect(existsSync(bin)).toBe(true);
    expect(statSync(bin).mode & 0o111).not.toBe(0);
  });

  test("the runtime stage installs what Dawn loads (besides what debian-slim has)", () => {
    const runtimeRun = steps(stage("runtime"), "RUN").map((r) => r.args).join(" ");
    const installed = /apt-get install -y --no-install-recommends ([^&]+)/.exec(runtimeRun)![1].trim().split(/\s+/);
    const dawn = join(app, "node_modules/bun-webgpu-linux-x64/libwebgpu_wrapper.so");
    expect(existsSync(dawn)).toBe(true);
    const needed = [...spawnSync("readelf", ["-d", dawn], { encoding: "utf8" }).stdout.matchAll(/\(NEEDED\)\s+Shared library: \[(.+)\]/g)].map((m) => m[1]);
    expect(needed).toContain("libstdc++.so.6");
    const slim = new Set(["libc6", "libgcc-s1"]); // in debian:bookworm-slim itself
    for (const lib of [...needed, "libvulkan.so.1"]) {
      const owners = spawnSync("dpkg", ["-S", `*/${lib}`], { encoding: "utf8" })
        .stdout.split("\n")
        .filter((l) => l.endsWith(`/${lib}`))
        .map((l) => l.split(":")[0].split(",")[0].trim());
      expect({ lib, owned: owners.length > 0 }).toEqual({ lib, owned: true });
      expect({ lib, provided: owners.some((p) => slim.has(p) || installed.includes(p)) }).toEqual({ lib, provided: true });
    }
  });

  test("its HEALTHCHECK passes while the binary serves and fails when it stops", async () => {
    const check = JSON.parse(/CMD\s+(\[.*\])$/.exec(steps(stage("runtime"), "HEALTHCHECK")[0].args)![1]) as string[];
    const health = (port: string) => spawnSync(check[0], check.slice(1), { env: { ...process.env, KVC_PORT: port }, encoding: "utf8", timeout: 10_000 }).status;
    // the container's settings come from KVC_* variables; here on loopback and a free port
    const env = { ...process.env, HOME: app, MESA_SHADER_CACHE_DIR, KVC_HOST: "127.0.0.1", KVC_PORT: "0", KVC_KV_MEMORY: "64MiB" };
    server = await spawnServer([join(app, "dist/kvc")], [], { cwd: app, env });
    const port = new URL(server.url).port;
    // the binary warms up first: the check fails until /health says ok
    await untilHealthy(server.url);
    expect(health(port)).toBe(0);
    expect(await server.stop()).toBe(0);
    server = null;
    expect(health(port)).not.toBe(0);
  });
});
