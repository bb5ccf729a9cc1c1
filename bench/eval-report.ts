// Markdown tables from bench/eval-table.ts rows: accuracy and achieved rate per
// (method, rate), one table per protocol, beside the reference simulation's rows
// (../shared/models/README.md) when they are given as REF_JSON.
//
//   bun bench/eval-report.ts --rows a.jsonl --rows b.jsonl [--ref ref.json] [--title T] [--label method=text ...] > out.md
// Rows of one (protocol, method, rate) from several files (a table run in parts) are pooled.
import { parseArgs } from "node:util";
import { readFileSync } from "node:fs";

const { values: a } = parseArgs({ options: { rows: { type: "string", multiple: true }, ref: { type: "string" }, title: { type: "string", default: "Retrieval under KV compression" }, note: { type: "string" }, label: { type: "string", multiple: true } } });
const labels = new Map((a.label ?? []).map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));
interface Row { protocol: string; method: string; rate: number; overall: { accuracy: number; n: number }; compression_rate_mean: number }
const rows: Row[] = pool((a.rows ?? []).flatMap((f) => readFileSync(f, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l))));

/** One row per (protocol, method, rate): accuracy and mean rate weighted by instances. */
function pool(rs: Row[]): Row[] {
  const by = new Map<string, Row>();
  for (const r of rs) {
    const key = `${r.protocol}|${r.method}|${r.rate}`;
    const p = by.get(key);
    if (!p) {
      by.set(key, structuredClone(r));
      continue;
    }
    const n = p.overall.n + r.overall.n;
    p.overall.accuracy = (p.overall.accuracy * p.overall.n + r.overall.accuracy * r.overall.n) / n;
    p.compression_rate_mean = (p.compression_rate_mean * p.overall.n + r.compression_rate_mean * r.overall.n) / n;
    p.overall.n = n;
  }
  return [...by.values()];
}
// reference: { "<method>": { "<rate>": accuracy } }
const ref: Record<string, Record<string, number>> = a.ref ? JSON.parse(readFileSync(a.ref, "utf8")) : {};

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const out: string[] = [`# ${a.title}`, ""];
if (a.note) out.push(a.note, "");
for (const protocol of [...new Set(rows.map((r) => r.protocol))]) {
  const rs = rows.filter((r) => r.protocol === protocol);
  const n = rs[0].overall.n;
  const rates = [...new Set(rs.filter((r) => r.method !== "none").map((r) => r.rate))].sort((x, y) => x - y);
  out.push(`## ${protocol === "aware" ? "Query-aware (whole prompt prefilled, then compressed)" : "Query-agnostic (context compressed before the question)"}, ${n} instances`, "");
  out.push(`Cells: accuracy / achieved compression rate (uncompressed blocks / blocks used, at the end of the answer).`, "");
  out.push(`| method | x1 (none) | ${rates.map((r) => `x${r}`).join(" | ")} |`, `|---|---|${rates.map(() => "---").join("|")}|`);
  const none = rs.find((r) => r.method === "none");
  for (const m of [...new Set(rs.map((r) => r.method))].filter((m) => m !== "none")) {
    const cells = rates.map((rate) => {
      const r = rs.find((x) => x.method === m && x.rate === rate);
      return r ? `${pct(r.overall.accuracy)} / ${r.compression_rate_mean.toFixed(1)}x` : "–";
    });
    out.push(`| ${labels.get(m) ?? m} | ${none ? pct(none.overall.accuracy) : "–"} | ${cells.join(" | ")} |`);
    if (protocol === "agnostic" && ref[m]) {
      out.push(`| ${m}, reference simulation | ${ref[m]["1"] !== undefined ? pct(ref[m]["1"]) : "–"} | ${rates.map((r) => (ref[m][String(r)] !== undefined ? pct(ref[m][String(r)]) : "–")).join(" | ")} |`);
    }
  }
  out.push("");
}
console.log(out.join("\n"));
