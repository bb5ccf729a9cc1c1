// Reusable compressed prefixes (kv_compression.cache_prefix) on the retrieval data:
// accuracy and time to first token, cold against warm, beside the query-aware
// compression the server runs without it. Each document (an instance's context) is
// asked up to --questions of its keys ("What is the special magic number for X?"):
//   aware  compressed after the whole prompt, question included (no prefix cache)
//   cold   cache_prefix with an empty prefix cache: the document's whole blocks are
//          compressed once, query-agnostically, then the question is fed
//   warm   the same request again, the compressed document cached: only the question
//          is prefilled (a request with any other question on it starts from that state too)
// Requests run one at a time, so TTFT is one request's. Rows go to OUT.jsonl, a table to stdout.
//
//   bun bench/eval-prefix.ts --model DIR --data chat-multikey.jsonl --out rows.jsonl
//     [--rates 1,2,8] [--method kvcompress] [--limit N] [--questions 3] [--lengths 1024,2048]
// Rate 1 runs uncompressed: the accuracy ceiling, and cold against warm is automatic prefix caching.
import { parseArgs } from "node:util";
import { appendFileSync } from "node:fs";
import { Engine } from "../src/engine/engine.ts";
import { Sequence } from "../src/engine/sequence.ts";
import { parseBytes } from "../src/cache/kv-cache.ts";
import type { CompressionMethod, CompressionOptions } from "../src/cache/compression.ts";
import { firstDigits, loadInstances, promptIds, type RetrievalInstance } from "../src/eval/retrieval.ts";
import { median } from "./profile.ts";

const { values: a } = parseArgs({
  options: {
    model: { type: "string" },
    data: { type: "string", multiple: true },
    out: { type: "string" },
    rates: { type: "string", default: "2,8" },
    method: { type: "string", default: "kvcompress" },
    limit: { type: "string" },
    questions: { type: "string", default: "3" },
    lengths: { type: "string" },
    "kv-memory": { type: "string", default: "2GiB" },
  },
});
if (!a.model || !a.data?.length || !a.out) throw new Error("usage: bun bench/eval-prefix.ts --model DIR --data FILE.jsonl --out ROWS.jsonl [--rates 2,8] [--limit N] [--questions 3]");

const lengths = a.lengths ? a.lengths.split(",").map(Number) : null;
const docs = a.data.flatMap((f) => loadInstances(f)).filter((x) => !lengths || lengths.includes(x.context_tokens)).slice(0, a.limit ? Number(a.limit) : undefined);
const engine = await Engine.load(a.model, { kvMemory: parseBytes(a["kv-memory"]!), log: (m) => console.error(`[eval-prefix] ${m}`) });
const tk = engine.tokenizer;

/** The instance asked about key `key` (answer `answer`) instead of its own. */
function askedAbout(x: RetrievalInstance, key: string, answer: string): RetrievalInstance {
  const question = x.question.replace(/for \w+\?$/, `for ${key}?`);
  const swap = (t: string) => t.slice(0, t.lastIndexOf(x.question)) + question + t.slice(t.lastIndexOf(x.question) + x.question.length);
  const prompt = typeof x.prompt === "string" ? swap(x.prompt) : x.prompt.map((m, i, ms) => (i === ms.length - 1 ? { ...m, content: swap(m.content) } : m));
  return { ...x, prompt, question, answer };
}

/** One request alone: TTFT, answer, cached tokens. */
async function ask(x: RetrievalInstance, compression: Partial<CompressionOptions>, cachePrefix: boolean) {
  const { ids, contextLen } = promptIds(tk, x);
  let t1 = NaN;
  const t0 = performance.now();
  const s = new Sequence(ids, {
    maxTokens: 12, sampling: { temperature: 0, topP: 1, topK: 0, seed: 0 }, ignoreEos: false,
    compression: { ...compression, cachePrefix }, prefixEnd: contextLen,
    onToken: () => (t1 = Number.isNaN(t1) ? performance.now() : t1),
  });
  engine.add(s);
  await engine.runUntilIdle();
  const output = tk.decode(s.output);
  return { ttftMs: t1 - t0, correct: firstDigits(output) === x.answer, cached: s.cachedTokens, rate: s.kv.compressionRate, output };
}

const rows: any[] = [];
for (const rate of a.rates!.split(",").map(Number)) {
  // rate 1: uncompressed, where cold against warm is automatic prefix caching
  const compression = { method: (rate === 1 ? "none" : a.method) as CompressionMethod, rate, observationWindow: 8, protectedWindow: 8, compressOnce: true };
  for (const doc of docs) {
    const text = typeof doc.prompt === "string" ? doc.prompt : doc.prompt.map((m) => m.content).join("\n");
    const keys = [...text.matchAll(/The special magic number for (\w+) is (\d+)/g)].map((m) => [m[1], m[2]]);
    const own = keys.findIndex(([, v]) => v === doc.answer);
    const asked = [own >= 0 ? keys[own] : null, ...keys.filter((_, i) => i !== own)].filter((k): k is string[] => k !== null).slice(0, Number(a.questions));
    for (const [qi, [key, answer]] of asked.entries()) {
      const x = askedAbout(doc, key, answer);
      // the prefix cache empty: nothing of this document is cached, uncompressed or compressed
      engine.sharing.prefix.clear();
      const aware = await ask(x, compression, false);
      engine.sharing.prefix.clear();
      const cold = await ask(x, compression, true);
      const warm = await ask(x, compression, true);
      const row = { id: doc.id, task: doc.task, context_tokens: doc.context_tokens, question: qi, method: a.method, rate, aware, cold, warm, same_output: cold.output === warm.output };
      rows.push(row);
      appendFileSync(a.out!, JSON.stringify(row) + "\n");
      console.error(`[eval-prefix] ${doc.id} q${qi} rate ${rate}: aware ${aware.correct ? 1 : 0} ${aware.ttftMs.toFixed(0)} ms, cold ${cold.correct ? 1 : 0} ${cold.ttftMs.toFixed(0)} ms, warm ${warm.correct ? 1 : 0} ${warm.ttftMs.toFixed(0)} ms (cached ${warm.cached})`);
    }
  }
}

const pct = (xs: boolean[]) => ((100 * xs.filter(Boolean).length) / Math.max(1, xs.length)).toFixed(1);
console.log(`| rate | n | aware acc % | cold acc % | warm acc % | warm = cold output | aware TTFT ms | cold TTFT ms | warm TTFT ms | cold / warm |`);
console.log(`|---|---|---|---|---|---|---|---|---|---|`);
for (const rate of [...new Set(rows.map((r) => r.rate))]) {
  const rs = rows.filter((r) => r.rate === rate);
  const t = (k: "aware" | "cold" | "warm") => median(rs.map((r) => r[k].ttftMs));
  console.log(`| ${rate} | ${rs.length} | ${pct(rs.map((r) => r.aware.correct))} | ${pct(rs.map((r) => r.cold.correct))} | ${pct(rs.map((r) => r.warm.correct))} | ${rs.filter((r) => r.same_output).length}/${rs.length} | ${t("aware").toFixed(0)} | ${t("cold").toFixed(0)} | ${t("warm").toFixed(0)} | ${(t("cold") / t("warm")).toFixed(1)}x |`);
}
engine.destroy();
process.exit(0);
