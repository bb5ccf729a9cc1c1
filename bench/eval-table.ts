// Retrieval accuracy under compression, method x rate, for both protocols, with the
// reference simulation's settings (observation window 8, protected window 8,
// compression once after the context). One engine for the whole table; each
// instance is prefilled once per protocol and forked into every (method, rate)
// (runRetrievalSweep), so a table costs about two prefills per instance. Each
// protocol's rows are appended to OUT.jsonl as soon as it is done.
//
//   bun bench/eval-table.ts --model DIR --data a.jsonl --data b.jsonl --out rows.jsonl
//     [--protocol agnostic|aware|both] [--rates 2,4,8,16,32,64] [--methods none,kvcompress,...] [--skip N] [--limit N]
// A method is a name, kvcompress:ALLOCATION, or kvcrush+BASE (its importance method).
import { parseArgs } from "node:util";
import { appendFileSync } from "node:fs";
import { Engine } from "../src/engine/engine.ts";
import { parseBytes } from "../src/cache/kv-cache.ts";
import type { CompressionOptions } from "../src/cache/compression.ts";
import { loadInstances, runRetrievalSweep, summarize } from "../src/eval/retrieval.ts";

const { values: a } = parseArgs({
  options: {
    model: { type: "string" },
    data: { type: "string", multiple: true },
    out: { type: "string" },
    protocol: { type: "string", default: "both" },
    rates: { type: "string", default: "2,4,8,16,32,64" },
    methods: { type: "string", default: "none,kvcompress,snapkv,streaming,kvcrush+kvcompress,kvcrush+snapkv,kvcompress:global,kvcompress:layer,kvcompress:global-norm,kvcompress:pyramid" },
    /** instances of each file: skip the first `skip`, then take `limit` (runs of a table in parts) */
    skip: { type: "string", default: "0" },
    limit: { type: "string" },
    /** instances in flight at once (each with one sequence per method and rate) */
    batch: { type: "string", default: "1" },
    "kv-memory": { type: "string", default: "8GiB" },
    "prefill-chunk": { type: "string", default: "4096" },
  },
});
if (!a.model || !a.data?.length || !a.out) throw new Error("usage: bun bench/eval-table.ts --model DIR --data FILE.jsonl [--data ...] --out ROWS.jsonl");

const SETTINGS = { observationWindow: 8, protectedWindow: 8, compressOnce: true };
const skip = Number(a.skip);
const instances = a.data.flatMap((f) => loadInstances(f).slice(skip, a.limit ? skip + Number(a.limit) : undefined));
const rates = a.rates!.split(",").map(Number);
const protocols = a.protocol === "both" ? ["agnostic", "aware"] : [a.protocol!];

function methodOptions(m: string, rate: number): Partial<CompressionOptions> {
  if (m === "none") return { method: "none" };
  const [name, allocation] = m.split(":");
  const [method, base] = name.split("+");
  return {
    ...SETTINGS,
    method: method as CompressionOptions["method"],
    rate,
    ...(base ? { crushBase: base as CompressionOptions["crushBase"] } : {}),
    ...(allocation ? { allocation: allocation as CompressionOptions["allocation"] } : {}),
  };
}

const cells = a.methods!.split(",").flatMap((m) => (m === "none" ? [1] : rates).map((rate) => ({ m, rate })));
const batch = Number(a.batch);
const engine = await Engine.load(a.model, { kvMemory: parseBytes(a["kv-memory"]!), prefillChunk: Number(a["prefill-chunk"]), maxSeqs: batch * cells.length, log: (m) => console.error(`[kvc] ${m}`) });
const t0 = performance.now();
for (const protocol of protocols) {
  const t = performance.now();
  const compressMs = engine.stats.compressMs;
  const results = await runRetrievalSweep(engine, instances, { variants: cells.map((c) => methodOptions(c.m, c.rate)), queryAware: protocol === "aware", batch });
  // one prefill serves every cell: the seconds are the protocol's, shared
  const seconds = (performance.now() - t) / 1000, compressSeconds = (engine.stats.compressMs - compressMs) / 1000;
  cells.forEach(({ m, rate }, i) => {
    const r = summarize(results[i]);
    appendFileSync(a.out!, JSON.stringify({ protocol, method: m, rate, ...r, protocol_seconds: seconds, protocol_compress_seconds: compressSeconds }) + "\n");
    console.error(`${protocol} ${m} x${rate}: ${(100 * r.overall.accuracy).toFixed(1)}% of ${r.overall.n}, achieved ${r.compression_rate_mean.toFixed(2)}x`);
  });
  console.error(`${protocol}: ${seconds.toFixed(0)} s (total ${((performance.now() - t0) / 1000).toFixed(0)} s)`);
}
engine.destroy();
process.exit(0);
