// Retrieval accuracy under compression, method x rate, for both protocols, with the
// reference simulation's settings (observation window 8, protected window 8,
// compression once after the context). One engine for the whole table; each row
// is appended to OUT.jsonl as soon as it is done, so a cut-off run keeps its rows.
//
//   bun bench/eval-table.ts --model DIR --data a.jsonl --data b.jsonl --out rows.jsonl
//     [--protocol agnostic|aware|both] [--rates 2,4,8,16,32,64] [--methods none,kvcompress,...] [--limit N]
import { parseArgs } from "node:util";
import { appendFileSync } from "node:fs";
import { Engine } from "../src/engine/engine.ts";
import { parseBytes } from "../src/cache/kv-cache.ts";
import type { CompressionOptions } from "../src/cache/compression.ts";
import { loadInstances, runRetrieval, summarize } from "../src/eval/retrieval.ts";

const { values: a } = parseArgs({
  options: {
    model: { type: "string" },
    data: { type: "string", multiple: true },
    out: { type: "string" },
    protocol: { type: "string", default: "both" },
    rates: { type: "string", default: "2,4,8,16,32,64" },
    methods: { type: "string", default: "none,kvcompress,snapkv,streaming,kvcrush+kvcompress,kvcrush+snapkv" },
    limit: { type: "string" },
    batch: { type: "string", default: "32" },
    "kv-memory": { type: "string", default: "8GiB" },
    "prefill-chunk": { type: "string", default: "4096" },
  },
});
if (!a.model || !a.data?.length || !a.out) throw new Error("usage: bun bench/eval-table.ts --model DIR --data FILE.jsonl [--data ...] --out ROWS.jsonl");

const SETTINGS = { observationWindow: 8, protectedWindow: 8, compressOnce: true };
const instances = a.data.flatMap((f) => loadInstances(f).slice(0, a.limit ? Number(a.limit) : undefined));
const rates = a.rates!.split(",").map(Number);
const protocols = a.protocol === "both" ? ["agnostic", "aware"] : [a.protocol!];

function methodOptions(m: string, rate: number): Partial<CompressionOptions> {
  if (m === "none") return { method: "none" };
  const [method, base] = m.split("+");
  return { ...SETTINGS, method: method as CompressionOptions["method"], rate, ...(base ? { crushBase: base as CompressionOptions["crushBase"] } : {}) };
}

const engine = await Engine.load(a.model, { kvMemory: parseBytes(a["kv-memory"]!), prefillChunk: Number(a["prefill-chunk"]), maxSeqs: Number(a.batch), log: (m) => console.error(`[kvc] ${m}`) });
const t0 = performance.now();
for (const protocol of protocols) {
  for (const m of a.methods!.split(",")) {
    for (const rate of m === "none" ? [1] : rates) {
      const t = performance.now();
      const compressMs = engine.stats.compressMs;
      const results = await runRetrieval(engine, instances, { compression: methodOptions(m, rate), queryAware: protocol === "aware", batch: Number(a.batch) });
      const r = summarize(results);
      const row = { protocol, method: m, rate, ...r, seconds: (performance.now() - t) / 1000, compress_seconds: (engine.stats.compressMs - compressMs) / 1000 };
      appendFileSync(a.out, JSON.stringify(row) + "\n");
      console.error(`${protocol} ${m} x${rate}: ${(100 * r.overall.accuracy).toFixed(1)}% of ${r.overall.n}, achieved ${r.compression_rate_mean.toFixed(2)}x, ${row.seconds.toFixed(1)} s (total ${((performance.now() - t0) / 1000).toFixed(0)} s)`);
    }
  }
}
engine.destroy();
process.exit(0);
