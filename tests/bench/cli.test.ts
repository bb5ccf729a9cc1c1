// `kvc bench` at the tiny shape: every suite prints well-formed JSON records (Bun and
// Deno), the report turns them into tables, an SVG and summary.json, and the device
// entry script runs end to end into at most 8 files.
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT } from "../fixtures/helpers.ts";
import { archive, markdown, mergeSummary, readRecords, summarize, throughputSvg, writeReport } from "../../bench/report.ts";
import { GEMM_VARIANTS, MMA_VARIANTS } from "../../src/model/gemm.ts";

const TINY = {
  kernels: ["--contexts", "64,256", "--copy-mib", "4", "--min-pass-ms", "2", "--passes", "2", "--prefill-rows", "64", "--prefill-attn-lens", "40,100", "--rank-batch", "2", "--rank-lens", "20,300"],
  e2e: ["--prompt-len", "16", "--tokens", "12", "--prefill-lens", "16,64", "--batches", "1,2,4", "--batch-prompt-len", "8", "--batch-tokens", "8"],
  compress: ["--compress-shape", "tiny", "--prompts", "6", "--compress-prompt-len", "96", "--output-len", "24", "--rates", "1,2,64", "--kv-seqs", "2"],
  overhead: ["--overhead-batch", "2", "--overhead-prompt-len", "64", "--overhead-output-len", "40", "--overhead-allocation", "global"],
};
const SUMMARY_KEYS = [
  "gpu", "runtime", "commit", "decode_gemv_gbps_min", "decode_8b_tok_s", "decode_1b_tok_s", "throughput_ratio_64x", "hf_eager_8b_tok_s", "hf_eager_1b_tok_s",
  "prefill_gemm_tflops", "prefill_8b_tok_s", "prefill_1b_tok_s", "decode_1b_batch32_tok_s",
  "ort_web_8b_tok_s", "ort_web_1b_tok_s", "ort_web_1b_prefill_tok_s", "ort_node_8b_tok_s", "ort_node_1b_tok_s",
  "compress_overhead_pct",
];

function bench(cmd: string[], args: string[]) {
  const r = spawnSync(cmd[0], [...cmd.slice(1), "cli/main.ts", "bench", ...args], { cwd: ROOT, encoding: "utf8", timeout: 300_000 });
  return { code: r.status, lines: r.stdout.split("\n").filter(Boolean), err: r.stderr };
}
const isNum = (x: unknown) => typeof x === "number" && Number.isFinite(x);

describe("kvc bench --shape tiny", () => {
  const out = join(mkdtempSync(join(tmpdir(), "kvc-bench-")), "bench.jsonl");
  let recs: any[] = [];

  test("all suites print one JSON record per figure under Bun", () => {
    const r = bench(["bun"], ["all", "--shape", "tiny", "--out", out, ...TINY.kernels, ...TINY.e2e, ...TINY.compress, ...TINY.overhead]);
    expect(r.err).not.toContain("failed:");
    expect(r.code).toBe(0);
    recs = r.lines.map((l) => JSON.parse(l));
    expect(readRecords(readFileSync(out, "utf8"))).toEqual(recs);
    for (const x of recs) {
      expect(x.runtime).toBe("bun");
      expect(typeof x.gpu).toBe("string");
      expect(typeof x.commit).toBe("string");
      expect(x.test).not.toBe("error");
    }
    const of = (suite: string, t: string) => recs.filter((x) => x.suite === suite && x.test === t);
    expect(of("env", "env")[0].features).toHaveProperty("timestamps");
    expect(of("kernels", "gemv").map((x) => x.name).sort()).toEqual(["down", "down", "gate_up", "gate_up", "lm_head", "lm_head", "o", "o", "qkv", "qkv"]);
    for (const x of [...of("kernels", "gemv"), ...of("kernels", "attention"), ...of("kernels", "copy_kernel"), ...of("kernels", "read_kernel")]) {
      expect(isNum(x.gbps) && x.gbps >= 0).toBe(true);
      expect(x.bytes ?? x.bytes_per_seq).toBeGreaterThan(0);
    }
    expect(of("kernels", "attention").map((x) => x.context)).toEqual([64, 256]);
    // every GEMM variant times the four prefill matrices, and the step under it; the
    // tensor-core ones say why they were skipped where the adapter has no subgroup matrices
    const ran = of("kernels", "gemm").filter((x) => !x.skipped);
    const variants = [...GEMM_VARIANTS, ...(recs.some((x) => x.subgroup_matrix) ? MMA_VARIANTS : [])].map((v) => v.name);
    expect(ran.map((x) => `${x.variant} ${x.name}`)).toEqual(variants.flatMap((v) => ["qkv", "o", "gate_up", "down"].map((n) => `${v} ${n}`)));
    expect(of("kernels", "prefill_step").map((x) => x.gemm_variant)).toEqual(variants);
    for (const x of of("kernels", "gemm").filter((x) => x.skipped)) expect(x.skipped).toContain("subgroup matrices");
    expect(of("kernels", "decode_step").map((x) => x.M)).toEqual([1, 16]);
    // prefill attention: both kernels on each step (100 rows at once, then its last 64-row chunk)
    const pa = of("kernels", "prefill_attention");
    expect(pa.map((x) => `${x.kernel} ${x.rows} ${x.context_before}`)).toEqual(["40 0", "100 0", "64 36"].flatMap((c) => [`attention ${c}`, `attention_prefill ${c}`]));
    for (const x of pa) expect(x.ms > 0 && isNum(x.tflops) && x.keys_seen === x.rows * x.context_before + (x.rows * (x.rows + 1)) / 2).toBe(true);
    for (const x of pa.filter((x) => x.kernel === "attention_prefill")) expect(x.speedup).toBeGreaterThan(0);
    // kv_rank: each path at each length (300 keys per head: the position sort and the scratch sort run)
    const kr = of("kernels", "kv_rank");
    expect(kr.map((x) => `${x.keys_per_head} ${x.sort_pairs === 16 ? "scratch" : x.pos_words === 8 ? "positions" : "bitmap"}`)).toEqual(["20", "300"].flatMap((n) => [`${n} bitmap`, `${n} positions`, `${n} scratch`]));
    for (const x of kr) expect(x.ms > 0 && x.heads > 0 && x.heads % 2 === 0 && isNum(x.us_per_head)).toBe(true);
    expect(isNum(of("e2e", "single_stream")[0].decode_tok_s)).toBe(true);
    expect(of("e2e", "prefill").map((x) => x.prompt_len)).toEqual([16, 64]);
    const batches = of("e2e", "batch_decode");
    expect(batches.map((x) => x.batch)).toEqual([1, 2, 4]);
    for (const x of batches) expect(x.truncated).toBe(0);
    const rates = of("compress", "rate");
    expect(rates.map((x) => x.rate)).toEqual([1, 2, 64]);
    expect(rates[0].method).toBe("none");
    expect(rates[0].compressions).toBe(0);
    expect(rates[0].throughput_ratio).toBe(1);
    for (const x of rates) {
      expect(x.error).toBeNull();
      expect(x.output_tokens).toBe(6 * 24);
      expect(x.max_decode_batch).toBeGreaterThanOrEqual(1);
    }
    // compression makes room: the decode batch at 64x is at least the uncompressed one
    expect(rates[2].max_decode_batch).toBeGreaterThanOrEqual(rates[0].max_decode_batch);
    expect(rates[2].compressions).toBeGreaterThan(0);
    expect(isNum(of("overhead", "compress_overhead")[0].compress_overhead_pct)).toBe(true);
    for (const r of [...of("overhead", "compress_overhead"), ...of("overhead", "compress_slowdown_equal_cache")]) expect(r.allocation).toBe("global");
    const eq = of("overhead", "compress_slowdown_equal_cache");
    for (const r of eq) expect(isNum(r.pass_cost_pct) && isNum(r.scoring_pct) && isNum(r.gpu_step_ms) && isNum(r.gpu_ms_per_rank)).toBe(true);
  });

  test("the report: tables, an SVG plot and summary.json with the headline keys", () => {
    const dir = mkdtempSync(join(tmpdir(), "kvc-report-"));
    const s = writeReport(recs, dir);
    expect(Object.keys(s)).toEqual(SUMMARY_KEYS);
    expect(s.runtime).toBe("bun");
    expect(s.throughput_ratio_64x).toBe(recs.find((x) => x.rate === 64).throughput_ratio);
    expect(JSON.parse(readFileSync(join(dir, "summary.json"), "utf8"))).toEqual(s);
    const md = readFileSync(join(dir, "results.md"), "utf8");
    for (const h of ["## Kernels", "## End to end", "## KV-Compress throughput experiment", "## Compression pass cost", "| qkv | 1 |"]) expect(md).toContain(h);
    const svg = readFileSync(join(dir, "throughput-vs-rate.svg"), "utf8");
    expect(svg.startsWith("<svg")).toBe(true);
    expect(svg.trim().endsWith("</svg>")).toBe(true);
    expect((svg.match(/<circle/g) ?? []).length).toBe(6); // total and output tokens/s at 3 rates
    // a curve filed in parts: one total line per commit, each against its own rate 1
    const rated = recs.filter((r) => r.suite === "compress" && r.test === "rate");
    const later = rated.map((r) => ({ ...r, commit: "later", throughput_ratio: undefined, total_tok_s: 2 * r.total_tok_s }));
    const two = throughputSvg([...rated, ...later])!;
    expect((two.match(/<circle/g) ?? []).length).toBe(6); // total tokens/s at 3 rates, twice
    expect(two).toContain(`bun ${String(rated[0].commit).slice(0, 7)} total`);
    expect(two).toContain("bun later total");
    // archiving folds new figures into the kept summary
    const arch = mkdtempSync(join(tmpdir(), "kvc-archive-"));
    const slug = archive(recs, arch);
    expect(readdirSync(arch).sort()).toEqual([`${slug}.json`, `${slug}.md`, `${slug}.svg`, "summary.json", "throughput-vs-rate.svg"].sort());
    const merged = mergeSummary({ ...s, hf_eager_1b_tok_s: 12.5, compress_overhead_pct: 9 }, { ...s, compress_overhead_pct: 3 });
    expect(merged.hf_eager_1b_tok_s).toBe(12.5);
    expect(merged.compress_overhead_pct).toBe(3);
  });

  test("the report puts kvc beside transformers, eager and compiled, per shape and batch", () => {
    const base = { gpu: "G", commit: "c" };
    const md = markdown([
      { ...base, runtime: "bun", suite: "e2e", test: "single_stream", shape: "llama-3.2-1b", lookahead: 4, decode_tok_s: 700 },
      { ...base, runtime: "bun", suite: "e2e", test: "batch_decode", shape: "llama-3.2-1b", batch: 32, decode_tok_s: 4000 },
      { ...base, runtime: "pytorch", suite: "hf", test: "generate", shape: "llama-3.2-1b", mode: "eager", batch: 1, decode_tok_s: 20 },
      { ...base, runtime: "pytorch", suite: "hf", test: "generate", shape: "llama-3.2-1b", mode: "static_compile", batch: 1, decode_tok_s: 400 },
      { ...base, runtime: "pytorch", suite: "hf", test: "generate", shape: "llama-3.2-1b", mode: "eager", batch: 32, decode_tok_s: 500 },
      { ...base, runtime: "pytorch", suite: "hf", test: "generate", shape: "llama-3.2-1b", mode: "static_compile", batch: 32, skipped: "deadline" },
    ]);
    expect(md).toContain("| llama-3.2-1b | 1 | 700 | 20 | 35.00x | 400 | 1.75x |");
    expect(md).toContain("| llama-3.2-1b | 32 | 4000 | 500 | 8.00x |  |  |");
  });

  test("summary picks 8B GEMVs, the HF eager batch-1 figures and single-stream decode", () => {
    const base = { runtime: "bun", gpu: "G", commit: "c" };
    const s = summarize([
      { ...base, suite: "kernels", test: "gemv", shape: "llama-3.1-8b", M: 1, gbps: 3000 },
      { ...base, suite: "kernels", test: "gemv", shape: "llama-3.1-8b", M: 1, gbps: 2500 },
      { ...base, suite: "kernels", test: "gemv", shape: "llama-3.1-8b", M: 16, gbps: 100 },
      { ...base, suite: "kernels", test: "gemv", shape: "llama-3.2-1b", M: 1, gbps: 10 },
      { ...base, suite: "e2e", test: "single_stream", shape: "llama-3.1-8b", lookahead: 4, decode_tok_s: 150 },
      // a deeper lookahead than the engine serves with is not the headline
      { ...base, suite: "e2e", test: "single_stream", shape: "llama-3.1-8b", lookahead: 16, decode_tok_s: 170 },
      { ...base, suite: "overhead", test: "compress_overhead", planner: "gpu", compress_overhead_pct: 2 },
      { ...base, suite: "overhead", test: "compress_overhead", planner: "host", compress_overhead_pct: 40 },
      { ...base, runtime: "deno", suite: "e2e", test: "single_stream", shape: "llama-3.2-1b", decode_tok_s: 1 },
      { ...base, runtime: "pytorch", suite: "hf", test: "generate", shape: "llama-3.2-1b", mode: "eager", batch: 1, decode_tok_s: 80 },
      { ...base, runtime: "pytorch", suite: "hf", test: "generate", shape: "llama-3.2-1b", mode: "eager", batch: 32, decode_tok_s: 900 },
    ]);
    expect(s.decode_gemv_gbps_min).toBe(2500);
    expect(s.decode_8b_tok_s).toBe(150);
    expect(s.compress_overhead_pct).toBe(2); // the GPU planner's, not the host planner's beside it
    // once the overhead suite splits the equal-cache slowdown, the passes' share is the figure
    const withPasses = summarize([{ ...base, suite: "overhead", test: "compress_overhead", planner: "gpu", compress_overhead_pct: 20 },
      { ...base, suite: "overhead", test: "compress_slowdown_equal_cache", planner: "gpu", pass_cost_pct: 4.5 }]);
    expect(withPasses.compress_overhead_pct).toBe(4.5);
    expect(s.decode_1b_tok_s).toBeNull(); // Deno's figure is not Bun's
    expect(s.hf_eager_1b_tok_s).toBe(80);
    expect(s.decode_1b_tok_s_deno).toBe(1);
    // figures of the same GPU under another name survive a run that lacks them
    expect(mergeSummary({ ...s, gpu: "NVIDIA H200 (nvidia-smi)", hf_eager_8b_tok_s: 7 }, { ...s, gpu: "NVIDIA H200" }).hf_eager_8b_tok_s).toBe(7);
    expect(mergeSummary({ ...s, gpu: "NVIDIA H100", hf_eager_8b_tok_s: 7 }, { ...s, gpu: "NVIDIA H200" }).hf_eager_8b_tok_s).toBeNull();
    // a Deno-only run fills the Deno figures and leaves the Bun headline alone
    const denoOnly = mergeSummary(s, { ...s, runtime: "deno", commit: "d", decode_8b_tok_s: 99, decode_1b_tok_s: 300 });
    expect([denoOnly.runtime, denoOnly.decode_8b_tok_s, denoOnly.decode_8b_tok_s_deno, denoOnly.decode_1b_tok_s_deno, denoOnly.deno_commit]).toEqual(["bun", 150, 99, 300, "d"]);
  });

  test("KVC_GPU_NAME names the GPU where the adapter names only its driver", () => {
    const r = spawnSync("bun", ["cli/main.ts", "bench", "single", "--shape", "tiny", ...TINY.e2e], {
      cwd: ROOT, encoding: "utf8", timeout: 300_000, env: { ...process.env, KVC_GPU_NAME: "NVIDIA H200" },
    });
    const recs = r.stdout.split("\n").filter(Boolean).map((l) => JSON.parse(l));
    expect(recs.every((x) => x.gpu === "NVIDIA H200")).toBe(true);
    expect(recs[0].adapter).toContain("via Dawn");
  });

  test("Deno runs the decode suite and prints the same records", () => {
    const r = bench(["deno", "run", "-A"], ["single", "batch", "--shape", "tiny", ...TINY.e2e]);
    expect(r.code).toBe(0);
    const recs = r.lines.map((l) => JSON.parse(l));
    expect(recs.every((x) => x.runtime === "deno")).toBe(true);
    expect(recs.filter((x) => x.test === "batch_decode").every((x) => x.decode_tok_s > 0)).toBe(true);
    expect(recs.some((x) => x.test === "single_stream" && x.lookahead === 16)).toBe(true);
  });

  test("the sampling suite decodes each batch four ways (logprobs, a constraint)", () => {
    const r = bench(["bun"], ["sampling", "--shape", "tiny", "--batches", "1,3", "--batch-prompt-len", "8", "--batch-tokens", "8"]);
    expect(r.code).toBe(0);
    const recs = r.lines.map((l) => JSON.parse(l)).filter((x) => x.suite === "sampling");
    expect(recs.map((x) => `${x.batch} ${x.mode}`)).toEqual([1, 3].flatMap((b) => ["plain", "logprobs", "constrained", "logprobs+constrained"].map((m) => `${b} ${m}`)));
    expect(recs.every((x) => isNum(x.decode_tok_s) && x.decode_tok_s > 0 && x.truncated === 0)).toBe(true);
  });

  test("bad flags are refused with the flag's name", () => {
    const r = bench(["bun"], ["compress", "--rates", "0,2"]);
    expect(r.code).toBe(1);
    expect(r.err).toContain("--rates");
    expect(bench(["bun"], ["nonsense"]).err).toContain('unknown bench suite "nonsense"');
    expect(bench(["bun"], ["kernels", "--gemm-variants", "t44,nope"]).err).toContain('unknown GEMM variant "nope"');
  });
});

test("bench/run-device.sh: every suite at the tiny shape into at most 8 files", () => {
  const out = mkdtempSync(join(tmpdir(), "kvc-device-out-"));
  const r = spawnSync("bash", ["bench/run-device.sh", "all"], {
    cwd: ROOT, encoding: "utf8", timeout: 300_000,
    env: {
      ...process.env, OUT: out, BENCH_SHAPES: "tiny", BENCH_BUDGET_S: "280", KVC_COMMIT: "test",
      KERNEL_ARGS: TINY.kernels.join(" "), DECODE_ARGS: TINY.e2e.join(" "),
      COMPRESS_ARGS: TINY.compress.join(" "), OVERHEAD_ARGS: ["--compress-shape", "tiny", ...TINY.overhead].join(" "),
    },
  });
  expect(r.status).toBe(0);
  const files = readdirSync(out);
  expect(files.length).toBeLessThanOrEqual(8);
  for (const f of ["bench.jsonl", "log.txt", "results.md", "results.json", "summary.json", "throughput-vs-rate.svg"]) expect(files).toContain(f);
  const recs = readRecords(readFileSync(join(out, "bench.jsonl"), "utf8"));
  const runtimes = new Set(recs.map((x) => x.runtime));
  expect(runtimes.has("bun")).toBe(true);
  expect(runtimes.has("deno")).toBe(true);
  expect(recs.some((x) => x.suite === "hf")).toBe(true); // a record even where PyTorch is missing
  expect(recs.filter((x) => x.runtime !== "pytorch").every((x) => x.commit === "test")).toBe(true);
  const s = JSON.parse(readFileSync(join(out, "summary.json"), "utf8"));
  // the headline keys, then Deno's figures beside Bun's
  expect(Object.keys(s)).toEqual([...SUMMARY_KEYS, "decode_8b_tok_s_deno", "decode_1b_tok_s_deno", "deno_commit"]);
  expect(s.runtime).toBe("bun");
  expect(r.stdout).toContain("throughput_ratio_64x");
});
