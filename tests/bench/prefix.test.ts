// `kvc bench prefix` at the tiny shape: cold and warm time to first token of a request
// whose prefix was sent before, uncompressed and with cache_prefix, as JSON records; the
// report's table and the summary's prefix_ttft_speedup (1B shape, 2000-token prefix).
import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { ROOT } from "../fixtures/helpers.ts";
import { markdown, summarize } from "../../bench/report.ts";

test("kvc bench prefix: a warm request finds its whole prefix cached and reaches its first token sooner", () => {
  const args = ["cli/main.ts", "bench", "prefix", "--prefix-shape", "tiny", "--prefix-len", "512", "--prefix-suffix", "16", "--prefix-repeats", "2", "--prefix-rate", "4"];
  const r = spawnSync("bun", args, { cwd: ROOT, encoding: "utf8", timeout: 300_000 });
  expect(r.status).toBe(0);
  const recs = r.stdout.split("\n").filter(Boolean).map((l) => JSON.parse(l));
  const ttft = recs.filter((x) => x.suite === "prefix" && x.test === "prefix_ttft");
  expect(ttft.map((x) => x.mode)).toEqual(["none", "cache_prefix kvcompress 4x"]);
  for (const x of ttft) {
    expect(x.cached_tokens).toBe(512);
    expect(x.repeats).toBe(2);
    expect(x.warm_ttft_ms).toBeLessThan(x.cold_ttft_ms);
    expect(x.speedup).toBeCloseTo(x.cold_ttft_ms / x.warm_ttft_ms, 1);
  }
  expect(markdown(recs)).toContain("## Prefix caching");
  const base = { runtime: "bun", gpu: "G", commit: "c", suite: "prefix", test: "prefix_ttft", shape: "llama-3.2-1b", prefix_len: 2000 };
  expect(summarize([{ ...base, mode: "cache_prefix kvcompress 8x", speedup: 30 }, { ...base, mode: "none", speedup: 7.5 }]).prefix_ttft_speedup).toBe(7.5);
  expect("prefix_ttft_speedup" in summarize([{ ...base, suite: "e2e", test: "prefill" }])).toBe(false);
}, 300_000);
