// Benchmark report: JSON-line records (kvc bench, bench/hf_baseline.py) in; a markdown
// page of tables, an SVG of throughput against compression rate, and the headline
// summary.json out. With --archive DIR it also files the run under DIR (bench/results)
// by date, GPU and commit, and folds its headline figures into DIR/summary.json.
//
//   bun bench/report.ts --in bench.jsonl [--in more.jsonl] --out DIR [--archive bench/results]
//
// Long file: one table builder per suite, each short, sharing the record helpers.
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { lineChart, type Series } from "./plot.ts";

export type Rec = Record<string, any>;

export interface Summary {
  gpu: string | null;
  runtime: string | null;
  commit: string | null;
  decode_gemv_gbps_min: number | null;
  decode_8b_tok_s: number | null;
  decode_1b_tok_s: number | null;
  throughput_ratio_64x: number | null;
  hf_eager_8b_tok_s: number | null;
  hf_eager_1b_tok_s: number | null;
  /** onnxruntime-web's WebGPU backend (bench/ort/ort-bench.ts): batch-1 decode and 2048-token prefill */
  ort_web_8b_tok_s: number | null;
  ort_web_1b_tok_s: number | null;
  ort_web_1b_prefill_tok_s: number | null;
  /** the same graph on onnxruntime-node's native WebGPU provider (what transformers.js uses under Bun) */
  ort_node_8b_tok_s: number | null;
  ort_node_1b_tok_s: number | null;
  /**
   * Decode step time the compression passes add at interval 16, caches about as long as
   * uncompressed, attention scoring excluded (the overhead suite's pass_cost_pct); runs
   * from before it had that figure give the host time inside passes instead.
   */
  compress_overhead_pct: number | null;
  /**
   * Prefix caching (the prefix suite, 1B shape): cold TTFT / warm TTFT of a request whose
   * 2000-token prefix was sent before, uncompressed (goal: >= 5), when a run has it
   */
  prefix_ttft_speedup?: number | null;
  /** Deno's single-stream figures beside Bun's headline, when a Deno run is in the records */
  decode_8b_tok_s_deno?: number | null;
  decode_1b_tok_s_deno?: number | null;
  deno_commit?: string | null;
  /** GGUF files (bench/gguf-peer.ts): single-stream decode of kvc and of llama.cpp's CUDA build on the same random-weight file */
  decode_8b_q4km_tok_s?: number | null;
  decode_8b_q8_tok_s?: number | null;
  llamacpp_8b_q4km_tok_s?: number | null;
}

const S8 = "llama-3.1-8b", S1 = "llama-3.2-1b";
const ORT_WEB = "onnxruntime-web", ORT_NODE = "onnxruntime-node";

/** Parses JSON lines, skipping anything else a log may hold. */
export function readRecords(text: string): Rec[] {
  const out: Rec[] = [];
  for (const line of text.split("\n")) {
    const t = line.trim();
    if (!t.startsWith("{")) continue;
    try {
      const r = JSON.parse(t);
      if (r && typeof r.suite === "string") out.push(r);
    } catch {
      // a line cut short by a timeout
    }
  }
  return out;
}

const last = <T>(xs: T[]): T | undefined => xs[xs.length - 1];
const num = (x: unknown): number | null => (typeof x === "number" && Number.isFinite(x) ? x : null);

/** The headline figures; kvc's from `runtime` (Bun first), the baseline's from PyTorch eager at batch 1. */
/**
 * Throughput records with their ratio to rate 1 filled in where they were measured
 * before the rate-1 run of the same experiment (same commit, runtime and sizes).
 */
function withRatios(recs: Rec[]): Rec[] {
  const key = (r: Rec) => [r.commit, r.runtime, r.shape, r.prompts, r.prompt_len, r.output_len, r.kv_seqs, r.interval].join("|");
  const base = new Map(recs.filter((r) => r.suite === "compress" && r.test === "rate" && r.rate === 1 && num(r.total_tok_s) !== null).map((r) => [key(r), r.total_tok_s as number]));
  return recs.map((r) => {
    if (r.suite !== "compress" || r.test !== "rate" || r.throughput_ratio != null || num(r.total_tok_s) === null) return r;
    const b = base.get(key(r));
    return b ? { ...r, throughput_ratio: Math.round((1000 * (r.total_tok_s as number)) / b) / 1000 } : r;
  });
}

/** Single-stream decode tok/s of a shape as the engine serves: its default lookahead (4 under Bun, 16 under Deno). */
function singleOf(rs: Rec[], shape: string): number | null {
  const all = rs.filter((r) => r.test === "single_stream" && r.shape === shape && !r.quant);
  const byDefault = all.filter((r) => r.lookahead === (r.runtime === "deno" ? 16 : 4));
  return num(last(byDefault.length ? byDefault : all)?.decode_tok_s);
}

/**
 * Prefill and batched-decode headline figures: the model's own GEMM variant on the 8B
 * prefill step (all its matrices: total FLOPs over total time), prefill tokens/s of the
 * longest prompt of each shape, decode tokens/s of the 1B shape at batch 32.
 */
function tensorCoreFigures(mine: Rec[]): Record<string, number | null> {
  const gemm = mine.filter((r) => r.test === "gemm" && r.shape === S8 && r.model_variant === true && num(r.tflops) !== null && num(r.ms) !== null);
  const ms = gemm.reduce((a, r) => a + (r.ms as number), 0);
  const tflop = gemm.reduce((a, r) => a + (r.tflops as number) * (r.ms as number), 0);
  const prefill = (shape: string) => {
    const rs = mine.filter((r) => r.test === "prefill" && r.shape === shape && num(r.prefill_tok_s) !== null);
    const longest = Math.max(...rs.map((r) => r.prompt_len as number));
    return num(last(rs.filter((r) => r.prompt_len === longest))?.prefill_tok_s);
  };
  return {
    prefill_gemm_tflops: ms > 0 ? Math.round((100 * tflop) / ms) / 100 : null,
    prefill_8b_tok_s: prefill(S8),
    prefill_1b_tok_s: prefill(S1),
    decode_1b_batch32_tok_s: num(last(mine.filter((r) => r.test === "batch_decode" && r.shape === S1 && r.batch === 32))?.decode_tok_s),
  };
}

/** The last figure `key` of one onnxruntime engine's records ("onnxruntime-web"), test and shape (prefill: at `promptLen`). */
function ortFigure(recs: Rec[], engine: string, test: string, shape: string, key: string, promptLen?: number): number | null {
  const rs = recs.filter((r) => r.suite === "ort" && String(r.engine).startsWith(engine + " ") && r.test === test && r.shape === shape && (promptLen === undefined || r.prompt_len === promptLen));
  return num(last(rs.filter((r) => num(r[key]) !== null))?.[key]);
}

export function summarize(recs: Rec[]): Summary {
  const ours = recs.filter((r) => r.runtime === "bun" || r.runtime === "deno");
  const runtime = ours.some((r) => r.runtime === "bun" && r.suite !== "env") ? "bun" : ours.find((r) => r.suite !== "env")?.runtime ?? null;
  const mine = ours.filter((r) => r.runtime === runtime && !r.error && !r.skipped);
  const gemvs = (shape: string) => mine.filter((r) => r.test === "gemv" && r.M === 1 && r.shape === shape && !r.quant).map((r) => r.gbps as number);
  const g = gemvs(S8).length ? gemvs(S8) : gemvs(S1);
  const single = (shape: string) => singleOf(mine, shape);
  const hf = (shape: string) => num(last(recs.filter((r) => r.suite === "hf" && r.shape === shape && r.batch === 1 && r.mode === "eager" && !r.error))?.decode_tok_s);
  const r64 = last(withRatios(mine).filter((r) => r.suite === "compress" && r.test === "rate" && r.rate === 64 && r.throughput_ratio != null));
  const head = last(mine) ?? last(recs);
  const deno = runtime === "deno" ? [] : ours.filter((r) => r.runtime === "deno" && !r.error && !r.skipped);
  const denoFigures = deno.some((r) => r.test === "single_stream")
    ? { decode_8b_tok_s_deno: singleOf(deno, S8), decode_1b_tok_s_deno: singleOf(deno, S1), deno_commit: last(deno)?.commit ?? null }
    : {};
  const gguf = (engine: string, quant: string) => num(last(recs.filter((r) => r.suite === "gguf" && r.test === "gguf_decode" && r.engine === engine && r.shape === S8 && r.quant === quant && !r.error))?.decode_tok_s);
  const prefixRec = last(mine.filter((r) => r.suite === "prefix" && r.test === "prefix_ttft" && r.mode === "none" && r.prefix_len === 2000 && r.shape === S1 && !r.skipped));
  const prefixFigures = prefixRec ? { prefix_ttft_speedup: num(prefixRec.speedup) } : {};
  const ggufFigures = recs.some((r) => r.suite === "gguf")
    ? { decode_8b_q4km_tok_s: gguf("kvc", "q4_k_m"), decode_8b_q8_tok_s: gguf("kvc", "q8_0"), llamacpp_8b_q4km_tok_s: gguf("llamacpp-cuda", "q4_k_m") }
    : {};
  return {
    gpu: head?.gpu ?? null,
    runtime,
    commit: head?.commit ?? null,
    decode_gemv_gbps_min: g.length ? Math.min(...g) : null,
    decode_8b_tok_s: single(S8),
    decode_1b_tok_s: single(S1),
    throughput_ratio_64x: num(r64?.throughput_ratio),
    hf_eager_8b_tok_s: hf(S8),
    hf_eager_1b_tok_s: hf(S1),
    ...tensorCoreFigures(mine),
    ort_web_8b_tok_s: ortFigure(recs, ORT_WEB, "ort_decode", S8, "decode_tok_s"),
    ort_web_1b_tok_s: ortFigure(recs, ORT_WEB, "ort_decode", S1, "decode_tok_s"),
    ort_web_1b_prefill_tok_s: ortFigure(recs, ORT_WEB, "ort_prefill", S1, "prefill_tok_s", 2048),
    ort_node_8b_tok_s: ortFigure(recs, ORT_NODE, "ort_decode", S8, "decode_tok_s"),
    ort_node_1b_tok_s: ortFigure(recs, ORT_NODE, "ort_decode", S1, "decode_tok_s"),
    compress_overhead_pct: num(last(mine.filter((r) => r.test === "compress_slowdown_equal_cache" && r.pass_cost_pct != null))?.pass_cost_pct)
      ?? num(last(mine.filter((r) => r.test === "compress_overhead" && (r.planner ?? "gpu") === "gpu"))?.compress_overhead_pct),
    ...denoFigures,
    ...ggufFigures,
    ...prefixFigures,
  };
}

/** Same GPU model? Names differ by source (nvidia-smi, Dawn, wgpu): one normalized name holds the other. */
function sameGpu(a: string, b: string): boolean {
  const n = (s: string) => s.toLowerCase().replace(/[^a-z0-9]+/g, " ").trim();
  return n(a).includes(n(b)) || n(b).includes(n(a));
}

/** A newer summary over an older one: figures the new run did not measure keep their old value. */
export function mergeSummary(old: Partial<Summary> | null, next: Summary): Summary {
  if (!old || (old.gpu && next.gpu && !sameGpu(old.gpu, next.gpu))) return next;
  if (next.runtime === "deno" && old.runtime === "bun") {
    // a Deno-only run: its figures go beside the Bun headline, not over it
    const d = next as Summary & Record<string, unknown>;
    return { ...(old as Summary), decode_8b_tok_s_deno: d.decode_8b_tok_s ?? old.decode_8b_tok_s_deno, decode_1b_tok_s_deno: d.decode_1b_tok_s ?? old.decode_1b_tok_s_deno, deno_commit: d.commit } as Summary;
  }
  const out = { ...next } as Record<string, unknown>;
  for (const [k, v] of Object.entries(old)) if (out[k] === null || out[k] === undefined) out[k] = v;
  return out as unknown as Summary;
}

// --- markdown ---

const fmt = (v: unknown): string => (v === null || v === undefined ? "–" : typeof v === "number" ? String(v) : String(v));

/** Rows of kvc (Bun) beside the transformers figures of the same records, per shape and batch. */
function sideBySide(recs: Rec[]): (string | number)[][] {
  const hf = recs.filter((r) => r.suite === "hf" && r.test === "generate" && typeof r.decode_tok_s === "number");
  const kvc = recs.filter((r) => r.suite === "e2e" && r.runtime === "bun" && !r.error && !r.skipped);
  const rows: (string | number)[][] = [];
  const ratio = (a?: number, b?: number) => (a && b ? `${(a / b).toFixed(2)}x` : "");
  for (const key of [...new Set(hf.map((r) => `${r.shape}|${r.batch}`))]) {
    const [shape, b] = key.split("|"), batch = Number(b);
    const mine = batch === 1
      ? singleOf(kvc, shape)
      : last(kvc.filter((r) => r.test === "batch_decode" && r.shape === shape && r.batch === batch))?.decode_tok_s;
    const eager = last(hf.filter((r) => r.shape === shape && r.batch === batch && r.mode === "eager"))?.decode_tok_s;
    const comp = last(hf.filter((r) => r.shape === shape && r.batch === batch && r.mode === "static_compile"))?.decode_tok_s;
    if (typeof mine !== "number") continue;
    rows.push([shape, batch, mine, eager ?? "", ratio(mine, eager as number), comp ?? "", ratio(mine, comp as number)]);
  }
  return rows;
}

/** kvc's single-stream decode and prefill tokens/s beside each onnxruntime engine's, per shape. */
function ortBeside(recs: Rec[]): (string | number)[][] {
  const kvc = recs.filter((r) => r.suite === "e2e" && r.runtime === "bun" && !r.error && !r.skipped);
  const ortRecs = recs.filter((r) => r.suite === "ort" && r.shape && typeof r.engine === "string");
  const rows: (string | number)[][] = [];
  const row = (shape: string, engine: string, figure: string, mine: number | null | undefined, theirs: number | null) => {
    if (typeof mine === "number" && theirs !== null) rows.push([shape, figure, engine, mine, theirs, `${(mine / theirs).toFixed(2)}x`]);
  };
  for (const shape of [...new Set(ortRecs.map((r) => r.shape as string))]) {
    for (const engine of [ORT_WEB, ORT_NODE]) {
      row(shape, engine, "decode", singleOf(kvc, shape), ortFigure(recs, engine, "ort_decode", shape, "decode_tok_s"));
      for (const len of [...new Set(ortRecs.filter((r) => r.test === "ort_prefill" && r.shape === shape).map((r) => r.prompt_len as number))]) {
        const mine = last(kvc.filter((r) => r.test === "prefill" && r.shape === shape && r.prompt_len === len))?.prefill_tok_s;
        row(shape, engine, `prefill ${len}`, mine, ortFigure(recs, engine, "ort_prefill", shape, "prefill_tok_s", len));
      }
    }
  }
  return rows;
}

function table(head: string[], rows: unknown[][]): string {
  if (!rows.length) return "";
  const line = (cells: unknown[]) => `| ${cells.map(fmt).join(" | ")} |`;
  return [line(head), `|${head.map(() => "---").join("|")}|`, ...rows.map(line)].join("\n") + "\n";
}

const by = (recs: Rec[], f: (r: Rec) => boolean) => recs.filter(f);

/** One row per `row` key, one column per `col` key (in first-seen order), cells from `cell`. */
function pivot(recs: Rec[], row: (r: Rec) => string, col: (r: Rec) => string, cell: (r: Rec) => unknown, corner: string): string {
  const rows = [...new Set(recs.map(row))];
  const cols = [...new Set(recs.map(col))];
  const at = new Map(recs.map((r) => [`${row(r)}|${col(r)}`, cell(r)]));
  return table([corner, ...cols], rows.map((rk) => [rk, ...cols.map((ck) => at.get(`${rk}|${ck}`) ?? "")]));
}
const groups = (recs: Rec[]) => [...new Set(recs.map((r) => `${r.runtime}|${r.shape}`))].map((k) => k.split("|"));

export function markdown(recs: Rec[]): string {
  const out: string[] = [];
  const env = recs.filter((r) => r.suite === "env");
  const s = summarize(recs);
  out.push(`# kvc benchmark results\n`);
  out.push(`GPU: **${s.gpu ?? "unknown"}** · commit \`${s.commit ?? "unknown"}\` · ${recs[0]?.time?.slice(0, 10) ?? ""}\n`);
  const envLines = env.map((e) => `- ${e.runtime} ${e.runtime_version}: ${e.adapter}; source digest ${e.source_digest}`);
  out.push(...new Set(envLines));
  for (const h of by(recs, (r) => r.suite === "hf" && r.test === "env")) out.push(`- PyTorch ${h.torch} / transformers ${h.transformers} on ${h.gpu}`);
  out.push("");
  out.push("## Headline (summary.json)\n");
  out.push(table(["figure", "value"], Object.entries(s)));

  const errors = by(recs, (r) => r.test === "error" || (r.error && r.suite !== "compress"));
  if (errors.length) {
    out.push("## Errors\n");
    out.push(table(["runtime", "suite", "shape", "message"], errors.map((r) => [r.runtime, r.suite, r.shape, String(r.message ?? r.error).slice(0, 300)])));
  }

  const k = by(recs, (r) => r.suite === "kernels");
  if (k.length) {
    out.push("## Kernels (timestamp queries over replays of a real step's dispatches)\n");
    for (const [rt, shape] of groups(k)) {
      const g = k.filter((r) => r.runtime === rt && r.shape === shape);
      out.push(`### ${shape}, ${rt}\n`);
      const sheet = g.find((r) => r.hbm_datasheet_gbps)?.hbm_datasheet_gbps;
      const ceilingName: Record<string, string> = { copy_kernel: "copy kernel, read + write (timestamps)", read_kernel: "read-only kernel (timestamps)", copy_buffer: "copyBufferToBuffer, read + write (wall clock)" };
      out.push(table(["ceiling", "bytes moved", "ms", "GB/s", `% of ${sheet ?? "?"} GB/s`], by(g, (r) => r.test in ceilingName).map((r) => [ceilingName[r.test], r.bytes, r.ms, r.gbps, r.pct_datasheet])));
      out.push(table(["GEMV", "M", "N x K", "ms (all layers)", "GB/s", "% datasheet", "% of read", "% of copy", "L2 risk"], by(g, (r) => r.test === "gemv").map((r) => [r.name, r.M, `${r.N} x ${r.K}`, r.ms, r.gbps, r.pct_datasheet, r.pct_read, r.pct_copy, r.l2_resident_risk ? "yes" : ""])));
      out.push(table(["attention context", "split-K", "ms per sequence", "GB/s", "% datasheet", "% of read"], by(g, (r) => r.test === "attention").map((r) => r.skipped ? [r.context, "", r.skipped, "", "", ""] : [r.context, r.split ? String(r.splits ?? "yes") : "no", r.ms_per_seq, r.gbps, r.pct_datasheet, r.pct_read])));
      out.push(table(["prefill GEMM", "variant", "M x N x K", "ms (all layers)", "TFLOP/s"], by(g, (r) => r.test === "gemm").map((r) => [r.name, r.variant ?? "", `${r.M} x ${r.N} x ${r.K}`, r.ms, r.tflops])));
      out.push(table(["prefill attention", "rows", "keys before", "ms (all layers)", "TFLOP/s", "speedup"], by(g, (r) => r.test === "prefill_attention").map((r) => r.skipped ? [r.kernel ?? "", r.rows, r.context_before, r.skipped, "", ""] : [r.kernel, r.rows, r.context_before, r.ms, r.tflops, r.speedup ?? ""])));
      // the quantized sweep (piece tiles, the 8-weight kernel "old", f16 twins "f16") has too many tiles for columns: one row each
      const qsweep = (r: Rec) => r.test === "gemv_tile" && ("piece" in r || String(r.tile).startsWith("f16 "));
      out.push(pivot(by(g, (r) => r.test === "gemv_tile" && !qsweep(r)), (r) => `${r.name} M=${r.M}`, (r) => r.tile, (r) => (r.model_tile ? `**${r.gbps}**` : r.gbps), "decode matmul GB/s by GEMV tile ROWSxBATCH[/LANES] or GEMM variant (bold: the model's)"));
      const qrow = (r: Rec) => `${/^(old|f16) /.test(r.tile) ? String(r.tile).slice(0, 3) + " (the f16 tile)" : r.tile} M=${r.M}`;
      out.push(pivot(by(g, qsweep), qrow, (r) => r.name, (r) => (r.model_tile ? `**${r.gbps}** (${r.ms})` : `${r.gbps} (${r.ms})`), "quantized GEMV tile (+x: x in workgroup memory, +q8: 8-bit x, +m: exponent trick; old: the 8-weight kernel; f16: f16 weights of the same shapes): GB/s of its weights (ms, all layers; bold: the model's)"));
      out.push(pivot(by(g, (r) => r.test === "attention_variant"), (r) => `G${r.G} WG${r.WG} NK${r.NK} T${r.target_workgroups}`, (r) => `ctx ${r.context}`, (r) => (r.model_variant ? `**${r.ms_per_seq}**` : r.ms_per_seq), "decode attention ms per sequence by layout (bold: the model's)"));
      const steps = by(g, (r) => r.test === "decode_step" || r.test === "prefill_step");
      out.push(table(["GPU step", "rows", "ms", "tokens/s (GPU only)", "breakdown (ms)"], steps.map((r) => [r.gemm_variant ? `${r.test} (${r.gemm_variant})` : r.test, r.M, r.ms, r.tok_s, Object.entries(r.breakdown_ms ?? {}).map(([n, v]) => `${n} ${v}`).join(", ")])));
    }
  }

  const e = by(recs, (r) => r.suite === "e2e");
  if (e.length) {
    out.push("## End to end (Engine API, random prompts, fixed output lengths)\n");
    out.push(table(["shape", "runtime", "prompt", "tokens", "lookahead", "decode tok/s", "ms/token", "GPU ms/step", "GPU idle ms/step", "host encode ms/step", "TTFT ms"],
      by(e, (r) => r.test === "single_stream").map((r) => [r.shape, r.runtime, r.prompt_len, r.tokens, r.lookahead, r.decode_tok_s, r.itl_ms, r.gpu_busy_ms_per_step ?? "", r.gpu_gap_ms_per_step ?? "", r.host_encode_ms_per_step ?? "", r.ttft_ms])));
    out.push(table(["shape", "runtime", "prompt", "TTFT ms", "prefill tok/s"], by(e, (r) => r.test === "prefill").map((r) => [r.shape, r.runtime, r.prompt_len, r.ttft_ms, r.prefill_tok_s])));
    out.push(table(["shape", "runtime", "batch", "decode tok/s", "per sequence", "step ms", "truncated"], by(e, (r) => r.test === "batch_decode").map((r) => r.skipped ? [r.shape, r.runtime, r.batch, r.skipped, "", "", ""] : [r.shape, r.runtime, r.batch, r.decode_tok_s, r.per_seq_tok_s, r.step_ms, r.truncated])));
  }

  const pre = by(recs, (r) => r.suite === "prefix" && r.test === "prefix_ttft");
  if (pre.length) {
    out.push("## Prefix caching (time to first token with the prefix sent before)\n");
    out.push(table(["shape", "runtime", "mode", "prefix", "suffix", "cold TTFT ms", "warm TTFT ms", "speedup", "cached tokens", "pairs"],
      pre.map((r) => r.skipped ? [r.shape, r.runtime, r.mode, "", "", r.skipped, "", "", "", ""] : [r.shape, r.runtime, r.mode, r.prefix_len, r.suffix_len, r.cold_ttft_ms, r.warm_ttft_ms, r.speedup, r.cached_tokens, r.repeats])));
  }

  const hf = by(recs, (r) => r.suite === "hf" && r.test === "generate");
  if (hf.length) {
    out.push("## Hugging Face transformers baseline (PyTorch, same shapes, f16, random init)\n");
    out.push(table(["shape", "mode", "batch", "prompt", "new tokens", "decode tok/s", "prefill ms", "warm-up s", "note"], hf.map((r) => [r.shape, r.mode, r.batch, r.prompt_len, r.new_tokens, r.decode_tok_s ?? "", r.prefill_ms ?? "", r.warm_s ?? "", r.error ? String(r.error).slice(0, 120) : r.skipped ?? ""])));
    const side = sideBySide(recs);
    if (side.length) {
      out.push("kvc beside transformers, decode tokens/s (kvc: Bun, default lookahead; batch 1 is the single stream):\n");
      out.push(table(["shape", "batch", "kvc", "hf eager", "kvc / eager", "hf static + compile", "kvc / compiled"], side));
    }
  }

  const ortRecs = by(recs, (r) => r.suite === "ort" && r.test !== "env");
  if (ortRecs.length) {
    out.push("## onnxruntime, WebGPU (bench/ort/ort-bench.ts: same shapes, f16, random weights, past key/values on the GPU)\n");
    for (const e of by(recs, (r) => r.suite === "ort" && r.test === "env")) out.push(`- ${e.engine} through ${e.binding}: ${e.adapter}, shader-f16 ${e.shader_f16 ? "yes" : "no"}`);
    out.push("");
    out.push(table(["shape", "engine", "binding", "test", "prompt", "tokens", "tok/s", "ms", "note"], ortRecs.map((r) => [r.shape, r.engine, r.binding, r.test, r.prompt_len ?? "", r.tokens ?? "",
      r.decode_tok_s ?? r.prefill_tok_s ?? "", r.ms_per_token ?? r.ttft_ms ?? r.build_and_load_ms ?? "",
      r.error ? String(r.error).slice(0, 200) : r.skipped ?? (r.test === "ort_check" ? `against wasm: ids ${r.ids_match ? "match" : "DIFFER"}, max logit diff ${r.max_abs_diff}` : "")])));
    const side = ortBeside(recs);
    if (side.length) {
      out.push("kvc (Bun) beside onnxruntime, tokens/s (decode: batch 1; prefill: one prompt):\n");
      out.push(table(["shape", "figure", "engine", "kvc", "onnxruntime", "kvc / onnxruntime"], side));
    }
  }

  const c = by(withRatios(recs), (r) => r.suite === "compress" && r.test === "rate");
  if (c.length) {
    out.push("## KV-Compress throughput experiment\n");
    const f = c[0];
    out.push(`${f.shape}, ${f.prompts} prompts of ${f.prompt_len} tokens, ${f.output_len} output tokens each, KV budget of ${f.kv_seqs} uncompressed sequences (${(f.kv_memory_bytes / 2 ** 20).toFixed(0)} MiB), compression every ${f.interval} decode steps.\n`);
    const sec = (ms: unknown) => (typeof ms === "number" ? Number((ms / 1000).toFixed(2)) : null);
    out.push(table(["runtime", "rate", "total tok/s", "output tok/s", "vs rate 1", "max batch", "mean batch", "compress s", "of it: plan s", "compress share %", "preemptions", "truncated", "wall s", "note"],
      c.map((r) => r.skipped ? [r.runtime, r.rate, "", "", "", "", "", "", "", "", "", "", "", r.skipped] :
        [r.runtime, r.rate, r.total_tok_s, r.output_tok_s, r.throughput_ratio, r.max_decode_batch, r.mean_decode_batch, r.compress_s,
          sec(r.engine_stats?.planMs), r.compress_share_pct, r.engine_stats?.preemptions, r.truncated, r.wall_s, r.error ?? ""])));
    out.push("![throughput vs compression rate](throughput-vs-rate.svg)\n");
  }

  const o = by(recs, (r) => r.test === "compress_overhead");
  if (o.length) {
    out.push("## Compression pass cost\n");
    out.push(table(["runtime", "planner", "shape", "batch", "prompt", "rate", "interval", "step ms plain", "step ms compressing", "ms per pass", "rank/gather ms", "plan ms", "apply ms", "host time in passes %", "slowdown %"],
      o.map((r) => [r.runtime, r.planner ?? "host", r.shape, r.batch, r.prompt_len, r.rate, r.interval, r.step_ms_plain, r.step_ms_compressing, r.compress_ms_per_pass, r.pass_ms_gather, r.pass_ms_plan, r.pass_ms_apply, r.compress_overhead_pct, r.slowdown_pct])));
    const eq = by(recs, (r) => r.test === "compress_slowdown_equal_cache");
    out.push(table(["runtime", "shape", "batch", "prompt", "rate (caches ~uncompressed)", "interval", "step ms plain", "step ms scoring only", "step ms compressing", "passes overlapping decode", "slowdown %", "of it: scoring %", "passes %"],
      eq.map((r) => [r.runtime, r.shape, r.batch, r.prompt_len, r.rate, r.interval, r.step_ms_plain, r.step_ms_scoring_only, r.step_ms_compressing, `${r.overlapped_passes} of ${Math.round(r.compressions / r.batch)}`, r.slowdown_pct, r.scoring_pct, r.pass_cost_pct])));
    const tl = eq.filter((r) => r.gpu_step_ms != null);
    if (tl.length) {
      out.push(table(["runtime", "shape", "GPU ms per step, scoring only / with passes", "GPU idle ms per step, scoring only / with passes", "kv_rank GPU ms per pass", "kv_evict GPU ms per pass"],
        tl.map((r) => [r.runtime, r.shape, `${r.gpu_step_ms_scoring_only} / ${r.gpu_step_ms}`, `${r.gpu_idle_ms_per_step_scoring_only} / ${r.gpu_idle_ms_per_step}`, r.gpu_ms_per_rank, r.gpu_ms_per_evict])));
    }
  }
  return out.join("\n");
}

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];

/** Throughput against compression rate, total and output tokens/s per runtime. */
export function throughputSvg(recs: Rec[]): string | null {
  const c = withRatios(recs).filter((r) => r.suite === "compress" && r.test === "rate" && !r.skipped && num(r.total_tok_s) !== null);
  if (!c.length) return null;
  const series: Series[] = [];
  // runs of several commits (a curve filed in parts) plot one total line per commit
  const commits = [...new Set(c.map((r) => r.commit))];
  for (const rt of [...new Set(c.map((r) => r.runtime))]) {
    for (const commit of commits) {
      const g = c.filter((r) => r.runtime === rt && r.commit === commit).sort((a, b) => a.rate - b.rate);
      if (!g.length) continue;
      const labels = Object.fromEntries(g.filter((r) => r.throughput_ratio != null).map((r) => [r.rate, `x${r.throughput_ratio}`]));
      // several commits: one total line each, named short enough for the legend
      const name = commits.length > 1 ? `${rt} ${String(commit).slice(0, 7)} total` : `${rt}: total tok/s`;
      series.push({ name, points: g.map((r) => [r.rate, r.total_tok_s]), color: COLORS[series.length % COLORS.length], labels });
      if (commits.length === 1) series.push({ name: `${rt}: output tok/s`, points: g.map((r) => [r.rate, r.output_tok_s]), color: COLORS[series.length % COLORS.length] });
    }
  }
  const f = c[0];
  return lineChart(series, {
    title: `Throughput vs KV compression rate (${f.shape}, ${f.prompts} x ${f.prompt_len} + ${f.output_len} tokens)`,
    subtitle: `${f.gpu} · ${commits.length > 1 ? "commits" : "commit"} ${commits.join(", ")} · KV budget ${f.kv_seqs} uncompressed sequences`,
    xLabel: "compression rate (kvcompress, continual)",
    yLabel: "tokens/s",
    logX: true,
  });
}

/** Writes results.json, results.md, summary.json and the SVG (when there is compress data) into `dir`. */
export function writeReport(recs: Rec[], dir: string): Summary {
  mkdirSync(dir, { recursive: true });
  const s = summarize(recs);
  writeFileSync(join(dir, "results.json"), JSON.stringify({ summary: s, records: recs }, null, 1) + "\n");
  writeFileSync(join(dir, "results.md"), markdown(recs));
  writeFileSync(join(dir, "summary.json"), JSON.stringify(s, null, 2) + "\n");
  const svg = throughputSvg(recs);
  if (svg) writeFileSync(join(dir, "throughput-vs-rate.svg"), svg);
  return s;
}

/** Files a run under `dir`: <date>-<gpu>-<commit>.{json,md,svg}; summary.json keeps the latest figures. */
export function archive(recs: Rec[], dir: string): string {
  mkdirSync(dir, { recursive: true });
  const s = summarize(recs);
  const date = (recs.find((r) => r.time)?.time ?? new Date().toISOString()).slice(0, 16).replace(/[:T]/g, "");
  const slug = `${date}-${(s.gpu ?? "gpu").replace(/[^A-Za-z0-9]+/g, "-").replace(/^-|-$/g, "").slice(0, 40)}-${(s.commit ?? "unknown").replace(/[^A-Za-z0-9]+/g, "")}`;
  writeFileSync(join(dir, `${slug}.json`), JSON.stringify({ summary: s, records: recs }, null, 1) + "\n");
  writeFileSync(join(dir, `${slug}.md`), markdown(recs).replace("(throughput-vs-rate.svg)", `(${slug}.svg)`));
  const svg = throughputSvg(recs);
  if (svg) {
    writeFileSync(join(dir, `${slug}.svg`), svg);
    copyFileSync(join(dir, `${slug}.svg`), join(dir, "throughput-vs-rate.svg"));
  }
  const sumPath = join(dir, "summary.json");
  const old = existsSync(sumPath) ? JSON.parse(readFileSync(sumPath, "utf8")) : null;
  writeFileSync(sumPath, JSON.stringify(mergeSummary(old, s), null, 2) + "\n");
  return slug;
}

if (import.meta.main) {
  const { values: a } = parseArgs({
    args: (globalThis as any).Deno?.args ?? (globalThis as any).process.argv.slice(2),
    options: { in: { type: "string", multiple: true }, out: { type: "string" }, archive: { type: "string" } },
  });
  if (!a.in?.length || (!a.out && !a.archive)) {
    console.error("usage: bun bench/report.ts --in FILE.jsonl [--in ...] (--out DIR | --archive bench/results)");
    (globalThis as any).process.exit(2);
  }
  const recs = a.in!.flatMap((f) => (existsSync(f) ? readRecords(readFileSync(f, "utf8")) : []));
  if (a.out) console.log(JSON.stringify(writeReport(recs, a.out)));
  if (a.archive) console.error(`archived as ${archive(recs, a.archive)} in ${a.archive}`);
}
