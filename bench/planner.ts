// Host-side cost of one KV-Compress planning pass, the planner beside the full-sort
// reference (bench/reference-planner.ts) in one run, at the Llama-3.2-1B cache shape
// (16 layers x 8 KV heads): the pass after a prefill (rate 2 and 8) and a continual
// pass (16 new tokens per head over budget). Random scores; positions out of slot order
// as compaction leaves them. Prints JSON lines; with --md FILE also a markdown table.
//
//   bun bench/planner.ts [--lens 256,1000,3000,6000] [--reps 5] [--json FILE] [--md FILE]
import { parseArgs } from "node:util";
import { writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { DEFAULT_COMPRESSION } from "../src/cache/compression.ts";
import { kvCompressPolicy, type HeadKeys, type PlanContext } from "../src/cache/policies.ts";
import { referenceKvCompress } from "./reference-planner.ts";
import { swapSlots, uniform } from "./random.ts";

const { values: a } = parseArgs({ options: { lens: { type: "string", default: "256,1000,3000,6000" }, reps: { type: "string", default: "5" }, json: { type: "string" }, md: { type: "string" } } });
const LAYERS = 16, KVH = 8, HEADS = LAYERS * KVH;
const reps = Number(a.reps);

function headKeys(n: number, seed: number): HeadKeys[] {
  const rnd = uniform(seed);
  return Array.from({ length: HEADS }, () => {
    const pos = Uint32Array.from({ length: n }, (_, i) => i);
    swapSlots(pos, rnd);
    return { pos, scores: Float32Array.from({ length: n }, () => rnd() ** 4) };
  });
}

function median(f: () => void): number {
  const t: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    f();
    t.push(performance.now() - t0);
  }
  return t.sort((x, y) => x - y)[Math.floor(t.length / 2)];
}

const rows: Record<string, unknown>[] = [];
for (const n of a.lens!.split(",").map(Number)) {
  const keys = headKeys(n, n);
  const ctx: PlanContext = { layers: LAYERS, kvHeads: KVH, lastPos: n - 1, logicalLen: n, opts: { ...DEFAULT_COMPRESSION, method: "kvcompress", protectedWindow: 32 } };
  for (const [pass, keep] of [["after prefill, rate 2", Math.floor((HEADS * n) / 2)], ["after prefill, rate 8", Math.floor((HEADS * n) / 8)], ["continual (16 over budget)", HEADS * (n - 16)]] as const) {
    const fast = median(() => kvCompressPolicy.plan(keys, ctx, keep));
    const ref = median(() => referenceKvCompress(keys, ctx, keep));
    const row = { suite: "planner", heads: HEADS, keys_per_head: n, pass, planner_ms: +fast.toFixed(2), reference_ms: +ref.toFixed(2), speedup: +(ref / fast).toFixed(2), cpu: cpus()[0]?.model ?? "unknown", runtime: `bun ${Bun.version}` };
    rows.push(row);
    console.log(JSON.stringify(row));
  }
}
if (a.json) writeFileSync(a.json, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
if (a.md) {
  const md = [
    `# KV-Compress planning pass on the host (${rows[0].cpu}, ${rows[0].runtime})`,
    "",
    `Llama-3.2-1B cache shape (${HEADS} (layer, KV head) pairs), random scores, median of ${reps}; the planner beside the full-sort reference in one run.`,
    "",
    "| keys per head | pass | planner ms | full-sort reference ms | speedup |",
    "|---|---|---|---|---|",
    ...rows.map((r) => `| ${r.keys_per_head} | ${r.pass} | ${r.planner_ms} | ${r.reference_ms} | ${r.speedup}x |`),
  ];
  writeFileSync(a.md, md.join("\n") + "\n");
}
