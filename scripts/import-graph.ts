// The project's import graph, checked: no cycle between folders, and the layers
// point one way. A folder is a top-level one (cli, routes, bench, tests, scripts)
// or one of src/'s (src/engine, src/cache, ...), so `routes -> src/serving ->
// src/engine -> src/model -> src/gpu` must stay a line; src/ never reaches cli/,
// routes/, bench/ or tests/, and routes/ sees of src/ only serving and the compression
// settings table. Files over LONG_FILE lines must say why at their top.
//
//   bun scripts/import-graph.ts          # prints the folder graph; exits 1 on a problem
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("..", import.meta.url));
const SCANNED = ["src", "cli", "routes", "bench", "tests", "scripts"];
/** Folders src/ must never import from (they sit above it or beside it). */
const ABOVE_SRC = ["cli", "routes", "bench", "tests", "scripts"];
/**
 * What routes/ may import from src/: serving, and the compression settings table the
 * request schema is derived from. The rest of src/ it reaches through serving.
 */
const ROUTES_SEE = ["src/serving/", "src/cache/compression.ts"];
/** Lines past which a file says at its top why it stays whole ("Long file: ..."). */
export const LONG_FILE = 400;

export type Graph = Map<string, Set<string>>;

/** Relative import specifiers of a module: static, re-exports and `import("...")`. */
export function importsOf(source: string): string[] {
  const out: string[] = [];
  for (const m of source.matchAll(/(?:\bfrom\s*|\bimport\s*\(?\s*)["'](\.{1,2}\/[^"']+)["']/g)) out.push(m[1]);
  return out;
}

/** The folder a file belongs to: src/<sub> inside src/, else its top-level folder. */
export function folderOf(file: string): string {
  const parts = file.split("/");
  return parts[0] === "src" && parts.length > 2 ? `src/${parts[1]}` : parts[0];
}

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(ROOT, dir)).sort()) {
    const p = join(dir, name);
    if (name === "node_modules" || name.startsWith(".")) continue;
    if (statSync(join(ROOT, p)).isDirectory()) out.push(...tsFiles(p));
    else if (name.endsWith(".ts")) out.push(p);
  }
  return out;
}

/** Every project file and the project files it imports (paths relative to the root). */
export function fileGraph(): Map<string, string[]> {
  const g = new Map<string, string[]>();
  for (const f of SCANNED.flatMap(tsFiles)) {
    const deps = importsOf(readFileSync(join(ROOT, f), "utf8"))
      .map((s) => normalize(join(dirname(f), s)))
      .filter((t) => !relative(ROOT, join(ROOT, t)).startsWith(".."));
    g.set(f, deps);
  }
  return g;
}

/** Folder -> folders it imports from (self-imports left out). */
export function folderGraph(files: Map<string, string[]>): Graph {
  const g: Graph = new Map();
  for (const [f, deps] of files) {
    const from = folderOf(f);
    const set = g.get(from) ?? new Set<string>();
    g.set(from, set);
    // files at the root (package.json) belong to no folder
    for (const d of deps) if (d.includes("/") && folderOf(d) !== from) set.add(folderOf(d));
  }
  return g;
}

/** The cycles of a graph, each as the list of its nodes (Tarjan's strongly connected components of 2+ nodes). */
export function cycles(g: Graph): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const on = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of g.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const comp: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1) out.push(comp.sort());
    }
  };
  for (const v of [...g.keys()].sort()) if (!idx.has(v)) visit(v);
  return out;
}

/**
 * Imports that point the wrong way: from src/ up into cli/, routes/, bench/, tests/
 * or scripts/, and from routes/ past serving into the engine, model or GPU.
 */
export function layerViolations(files: Map<string, string[]>): string[] {
  const out: string[] = [];
  for (const [f, deps] of files) {
    for (const d of deps) {
      if (f.startsWith("src/") && ABOVE_SRC.includes(d.split("/")[0])) out.push(`${f} imports ${d}`);
      if (f.startsWith("routes/") && d.startsWith("src/") && !ROUTES_SEE.some((p) => d.startsWith(p))) out.push(`${f} imports ${d}`);
    }
  }
  return out;
}

/** Files over LONG_FILE lines whose leading comment gives no "Long file:" reason. */
export function longFilesWithoutReason(files: Iterable<string>): string[] {
  const out: string[] = [];
  for (const f of files) {
    const lines = readFileSync(join(ROOT, f), "utf8").split("\n");
    const end = lines.findIndex((l) => !l.startsWith("//"));
    const header = lines.slice(0, end < 0 ? lines.length : end);
    if (lines.length > LONG_FILE && !header.some((l) => l.includes("Long file:"))) out.push(`${f} (${lines.length} lines)`);
  }
  return out;
}

if (import.meta.main) {
  const files = fileGraph();
  const g = folderGraph(files);
  for (const [from, to] of [...g].sort(([a], [b]) => a.localeCompare(b))) console.log(`${from.padEnd(12)} -> ${[...to].sort().join(", ")}`);
  const problems = [
    ...cycles(g).map((c) => `cycle between folders: ${c.join(" <-> ")}`),
    ...layerViolations(files).map((v) => `wrong way: ${v}`),
    ...longFilesWithoutReason(files.keys()).map((f) => `over ${LONG_FILE} lines without a "Long file:" reason at its top: ${f}`),
  ];
  for (const p of problems) console.error(p);
  process.exit(problems.length ? 1 : 0);
}
