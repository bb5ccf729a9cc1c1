// `bun run build:deno [OUT]`: dist/kvc-deno (or OUT), kvc on Deno's built-in WebGPU as one file.
//
// First choice is `deno compile` (the deno.json "build" task): Deno's runtime
// (denort) with the code, kernels/, web/ (the playground) and models/kvc-nano embedded. deno compile
// downloads denort from dl.deno.land, which no npm package carries; where that
// host cannot be reached (CI here: only package registries are), this builds the
// same single file another way: a small sh launcher followed by a tar.gz of the
// deno binary and the app (the modules of cli/main.ts, the npm packages they
// import, kernels/ and kvc-nano). The first run unpacks it into the cache folder, every run execs
// `deno run` on it. KVC_DENO_BUILD=compile or =launcher forces one way.
import { chmodSync, cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
/** a path as the user would type it: relative inside the project */
const shown = (p: string) => (relative(ROOT, p).startsWith("..") ? p : relative(ROOT, p));
const OUT = process.argv[2] ?? join(ROOT, "dist/kvc-deno");
const STAGE = join(ROOT, `dist/.deno-stage-${process.pid}`);
/** read at run time rather than imported */
const RUNTIME_FILES = ["kernels", "web", "models/kvc-nano", "deno.json", "package.json"];
/** packages only Bun loads (Deno has WebGPU built in) */
const BUN_ONLY = /^bun-webgpu/;
const want = process.env.KVC_DENO_BUILD ?? "auto";
if (!["auto", "compile", "launcher"].includes(want)) fail(`KVC_DENO_BUILD must be compile or launcher (got "${want}")`);

function fail(msg: string): never {
  rmSync(STAGE, { recursive: true, force: true });
  console.error(`build:deno: ${msg}`);
  process.exit(1);
}

function run(cmd: string[]): { code: number; out: string; err: string } {
  const p = Bun.spawnSync(cmd, { cwd: ROOT, stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
  return { code: p.exitCode ?? 1, out: p.stdout.toString(), err: p.stderr.toString() };
}

mkdirSync(join(OUT, ".."), { recursive: true });
rmSync(OUT, { force: true });

if (want !== "launcher") {
  const bunOnly = ["node_modules/bun-webgpu", `node_modules/bun-webgpu-${process.platform}-${process.arch}`].filter((p) => existsSync(join(ROOT, p)));
  const r = run(["deno", "compile", "-A", "--no-check", "--include", "kernels", "--include", "web", "--include", "models/kvc-nano", ...bunOnly.flatMap((p) => ["--exclude", p]), "-o", OUT, "cli/main.ts"]);
  if (r.code === 0) {
    console.log(`build:deno: ${shown(OUT)} (deno compile)`);
    process.exit(0);
  }
  const noRuntime = /denort|Setting up base binary/.test(r.err);
  if (want === "compile" || !noRuntime) fail(`deno compile failed:\n${r.err}`);
  console.log(`build:deno: deno compile cannot fetch its runtime (denort): ${r.err.split("\n").find((l) => /error sending request|dns|connect/i.test(l))?.replace(/^\s*\d+:\s*/, "") ?? "download failed"}`);
}

// --- the launcher: sh + tar.gz of deno and the app
const deno = run(["deno", "eval", "console.log(Deno.execPath())"]);
if (deno.code !== 0) fail(`cannot find the deno binary: ${deno.err}`);
const denoBin = deno.out.trim();

/**
 * What `deno run cli/main.ts` loads, from Deno's own module graph: the project's
 * modules and the npm packages they import (whole, as node_modules holds them),
 * less type declarations and the packages only Bun loads.
 */
function appFiles(): { files: string[]; packages: string[] } {
  const info = run(["deno", "info", "--json", "cli/main.ts"]);
  if (info.code !== 0) fail(`deno info failed: ${info.err}`);
  const files = new Set(RUNTIME_FILES);
  const packages = new Set<string>();
  for (const m of JSON.parse(info.out).modules as { specifier: string }[]) {
    if (!m.specifier.startsWith("file://") || m.specifier.endsWith(".d.ts") || m.specifier.endsWith(".d.mts")) continue;
    const rel = relative(ROOT, fileURLToPath(m.specifier));
    const pkg = /^node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(rel);
    if (pkg) {
      if (!BUN_ONLY.test(pkg[1])) packages.add(pkg[1]);
    } else files.add(rel);
  }
  return { files: [...files].sort(), packages: withDependencies([...packages]) };
}

/**
 * The packages and, transitively, what their package.json depends on: Deno's graph
 * lists only the modules it read, and a package's dependency (@huggingface/gguf needs
 * @huggingface/tasks) may be missing from it.
 */
function withDependencies(packages: string[]): string[] {
  const all = new Set(packages);
  const queue = [...packages];
  while (queue.length) {
    const deps = JSON.parse(readFileSync(join(ROOT, "node_modules", queue.pop()!, "package.json"), "utf8")).dependencies ?? {};
    for (const d of Object.keys(deps)) {
      if (all.has(d) || BUN_ONLY.test(d) || !existsSync(join(ROOT, "node_modules", d))) continue;
      all.add(d);
      queue.push(d);
    }
  }
  return [...all].sort();
}

rmSync(STAGE, { recursive: true, force: true });
mkdirSync(join(STAGE, "app"), { recursive: true });
cpSync(denoBin, join(STAGE, "deno"));
const { files, packages } = appFiles();
for (const f of files) cpSync(join(ROOT, f), join(STAGE, "app", f), { recursive: true });
for (const p of packages) cpSync(join(ROOT, "node_modules", p), join(STAGE, "app/node_modules", p), { recursive: true, dereference: true });

const tgz = join(STAGE, "payload.tar.gz");
const tar = run(["tar", "--owner=0", "--group=0", "-czf", tgz, "-C", STAGE, "deno", "app"]);
if (tar.code !== 0) fail(`tar failed: ${tar.err}`);
const payload = readFileSync(tgz);
const buildId = `${JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version}-${createHash("sha256").update(payload).digest("hex").slice(0, 12)}`;

const launcher = (offset: string) => `#!/bin/sh
# kvc-deno: kvc on Deno's built-in WebGPU in one file (scripts/build-deno.ts). This
# launcher is followed by a tar.gz of deno and the app; the first run unpacks it into
# the cache folder ($KVC_CACHE_DIR, else $XDG_CACHE_HOME/kvc, else ~/.cache/kvc).
set -eu
build=${buildId}
offset=${offset}
if [ -n "\${KVC_CACHE_DIR:-}" ]; then cache=$KVC_CACHE_DIR
elif [ -n "\${XDG_CACHE_HOME:-}" ]; then cache=$XDG_CACHE_HOME/kvc
elif [ -n "\${HOME:-}" ] && [ "$HOME" != / ] && [ -d "$HOME" ]; then cache=$HOME/.cache/kvc
else cache=\${TMPDIR:-/tmp}/kvc-$(id -u); fi
dir=$cache/$build/deno
if [ ! -f "$dir/.complete" ]; then
  tmp=$dir.$$.tmp
  rm -rf "$tmp"
  if ! { mkdir -p "$tmp" && tail -c +$((offset + 1)) "$0" | tar -xzf - -C "$tmp"; }; then
    rm -rf "$tmp"
    echo "kvc: cannot unpack into $tmp; set KVC_CACHE_DIR to a writable folder" >&2
    exit 1
  fi
  : > "$tmp/.complete"
  if [ -d "$dir" ] && [ ! -f "$dir/.complete" ]; then rm -rf "$dir"; fi
  mv -T "$tmp" "$dir" 2>/dev/null || rm -rf "$tmp"
fi
DENO_DIR=$dir/cache DENO_NO_UPDATE_CHECK=1 exec "$dir/deno" run -A --quiet --config "$dir/app/deno.json" "$dir/app/cli/main.ts" "$@"
exit 127
`;
// the payload starts right after the header, whose length counts its own digits
let header = launcher("0");
while (Buffer.byteLength(header) !== Number(/^offset=(\d+)$/m.exec(header)![1])) header = launcher(String(Buffer.byteLength(header)));
writeFileSync(OUT, Buffer.concat([Buffer.from(header), payload]));
chmodSync(OUT, 0o755);
rmSync(STAGE, { recursive: true, force: true });
console.log(`build:deno: ${shown(OUT)} (launcher + tar.gz: deno ${run([denoBin, "--version"]).out.split(" ")[1]}, ${packages.join(", ")}; ${(payload.length / 2 ** 20).toFixed(0)} MiB)`);
