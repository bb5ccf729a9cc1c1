// Eviction planner properties on random scores, for every policy: the budget is met
// exactly, the protected window survives, floors hold, KV-Compress evicts the
// lowest-scoring chunks first and rates differ per head, each of its allocations
// equals the papers' full-sort statement of it, KVCrush keeps representatives only
// from what its base would evict.
import { expect, test } from "bun:test";
import { ALLOCATIONS, DEFAULT_COMPRESSION, type CompressionOptions } from "../../src/cache/compression.ts";
import { ADA_FLOOR, keepBudget, kvCompressPolicy, kvCrushPolicy, pooledScores, shareProportionally, smallestSorted, snapKvPolicy, streamingPolicy, type HeadKeys, type PlanContext } from "../../src/cache/policies.ts";
import { policyFor } from "../../src/cache/methods.ts";
import { rand } from "../fixtures/gpu-helpers.ts";
import { referenceKvCompress } from "../../bench/reference-planner.ts";

const LAYERS = 3, KVH = 2;

/**
 * A sequence of `n` tokens whose head h lost `drop[h]` older odd positions to earlier
 * compressions; slots out of position order (as compaction leaves them), random
 * scores with a per-head scale.
 */
function keys(n: number, seed: number, drop: number[] = []): HeadKeys[] {
  return Array.from({ length: LAYERS * KVH }, (_, h) => {
    const r = rand(n, seed + h);
    let gone = drop[h] ?? 0;
    const kept: number[] = [];
    for (let p = 0; p < n; p++) if (p % 2 === 0 || gone-- <= 0) kept.push(p);
    const order = kept.map((_, i) => i).sort((a, b) => ((a * 7919 + h) % 13) - ((b * 7919 + h) % 13) || a - b);
    return {
      pos: Uint32Array.from(order.map((i) => kept[i])),
      scores: Float32Array.from(order.map((i) => Math.abs(r[i]) * (h + 1) ** 2)),
    };
  });
}

function ctxFor(n: number, o: Partial<CompressionOptions>): PlanContext {
  return { layers: LAYERS, kvHeads: KVH, lastPos: n - 1, logicalLen: n, opts: { ...DEFAULT_COMPRESSION, ...o } };
}

function check(k: HeadKeys[], ctx: PlanContext, method: CompressionOptions["method"]) {
  const policy = policyFor({ ...ctx.opts, method })!;
  const keep = keepBudget(ctx);
  const plan = policy.plan(k, ctx, keep);
  let kept = 0;
  plan.forEach((ev, h) => {
    const set = new Set(ev);
    expect(set.size).toBe(ev.length); // no slot twice
    for (const i of ev) {
      expect(i).toBeGreaterThanOrEqual(0);
      expect(i).toBeLessThan(k[h].pos.length);
      expect(k[h].pos[i]).toBeLessThanOrEqual(ctx.lastPos - ctx.opts.protectedWindow); // protected window kept
    }
    const left = k[h].pos.length - ev.length;
    expect(left).toBeGreaterThanOrEqual(Math.min(k[h].pos.length, ctx.opts.protectedWindow)); // floor per head
    kept += left;
  });
  const held = k.reduce((a, x) => a + x.pos.length, 0);
  expect(kept).toBe(Math.min(held, keep)); // budget met exactly
  return plan;
}

test("budget from rate or max_cache_tokens, floored by the protected window", () => {
  const heads = LAYERS * KVH;
  expect(keepBudget(ctxFor(1000, { rate: 4 }))).toBe(Math.floor((heads * 1000) / 4));
  expect(keepBudget(ctxFor(1000, { rate: 1 }))).toBe(heads * 1000);
  expect(keepBudget(ctxFor(1000, { maxCacheTokens: 100 }))).toBe(heads * 100);
  expect(keepBudget(ctxFor(1000, { rate: 64, protectedWindow: 32 }))).toBe(heads * 32);
  expect(keepBudget(ctxFor(20, { rate: 64, protectedWindow: 32 }))).toBe(heads * 20);
  expect(keepBudget(ctxFor(1000, { maxCacheTokens: 5000 }))).toBe(heads * 1000);
});

for (const method of ["kvcompress", "snapkv", "streaming", "kvcrush"] as const) {
  test(`${method}: budget met, protected window and floors kept, at every rate`, () => {
    for (const [n, rate, pw, drop] of [[300, 2, 32, []], [300, 8, 8, [0, 40, 0, 100, 3, 0]], [517, 64, 16, []], [90, 4, 0, []], [64, 3, 64, []]] as const) {
      const k = keys(n, n + rate, [...drop]);
      for (const allocation of ALLOCATIONS) {
        check(k, ctxFor(n, { rate, protectedWindow: pw, crushAnchor: "alternate", allocation }), method);
        check(k, ctxFor(n, { maxCacheTokens: 40, protectedWindow: pw, allocation }), method);
      }
    }
  });
}

test("kvcompress (global): chunks leave lowest mean score first; rates differ per head", () => {
  const n = 400, chunk = 16;
  const k = keys(n, 5);
  const ctx = ctxFor(n, { rate: 4, protectedWindow: 32, chunkSize: chunk, allocation: "global" });
  const plan = check(k, ctx, "kvcompress");
  // per head, the evicted keys are a prefix of its candidates sorted by pooled score
  const pooled = k.map((x) => pooledScores(x, ctx.opts.poolKernel));
  let maxEvictedChunk = -Infinity, minKeptChunk = Infinity;
  k.forEach((x, h) => {
    const cand = Array.from(x.pos.keys()).filter((i) => x.pos[i] <= ctx.lastPos - 32).sort((a, b) => pooled[h][a] - pooled[h][b] || x.pos[a] - x.pos[b]);
    const ev = Array.from(plan[h]);
    expect(ev).toEqual(cand.slice(0, ev.length));
    // whole chunks: mean pooled score of every fully evicted chunk <= that of every fully kept chunk
    for (let c = 0; c * chunk < cand.length; c++) {
      const part = cand.slice(c * chunk, (c + 1) * chunk);
      const mean = part.reduce((a, i) => a + pooled[h][i], 0) / part.length;
      if ((c + 1) * chunk <= ev.length) maxEvictedChunk = Math.max(maxEvictedChunk, mean);
      else if (c * chunk >= ev.length) minKeptChunk = Math.min(minKeptChunk, mean);
    }
  });
  expect(maxEvictedChunk).toBeLessThanOrEqual(minKeptChunk);
  // heads with larger scores keep more: rates vary per head
  const keptPerHead = plan.map((ev, h) => k[h].pos.length - ev.length);
  expect(new Set(keptPerHead).size).toBeGreaterThan(1);
  expect(keptPerHead[keptPerHead.length - 1]).toBeGreaterThan(keptPerHead[0]);
});

test("kvcompress per layer (layer, ada) keeps the same total in every layer; pyramid keeps more below", () => {
  const n = 300;
  const k = keys(n, 9);
  const perLayer = (allocation: CompressionOptions["allocation"]) => {
    const plan = check(k, ctxFor(n, { rate: 4, protectedWindow: 8, allocation }), "kvcompress");
    return Array.from({ length: LAYERS }, (_, l) => [0, 1].reduce((a, i) => a + n - plan[l * KVH + i].length, 0));
  };
  for (const allocation of ["layer", "ada"] as const) {
    const kept = perLayer(allocation);
    expect(Math.max(...kept) - Math.min(...kept)).toBeLessThanOrEqual(1);
  }
  const pyramid = perLayer("pyramid");
  for (let l = 1; l < LAYERS; l++) expect(pyramid[l]).toBeLessThan(pyramid[l - 1]);
});

test("kvcompress normalized allocations: a head's score scale moves no budget; ada keeps its floor", () => {
  // head h's scores carry a scale of (h + 1)^2 (keys()): raw sorts favour the later
  // heads; rescaled, the earlier ones
  const n = 600;
  const k = keys(n, 21);
  const rescaled = k.map((x, h) => ({ pos: x.pos, scores: x.scores.map((v) => v / (h + 1) ** 4) }));
  const kept = (keys: HeadKeys[], allocation: CompressionOptions["allocation"], rate = 8) => {
    const ctx = ctxFor(n, { rate, protectedWindow: 8, allocation });
    return check(keys, ctx, "kvcompress").map((ev, h) => keys[h].pos.length - ev.length);
  };
  for (const allocation of ["global-norm", "ada", "pyramid"] as const) expect(kept(rescaled, allocation)).toEqual(kept(k, allocation));
  expect(kept(rescaled, "global")).not.toEqual(kept(k, "global"));
  // a head whose attention all goes to one key still keeps ADA_FLOOR of its even share (less one chunk at most)
  for (const rate of [2, 4]) {
    const share = keepBudget(ctxFor(n, { rate })) / (LAYERS * KVH);
    expect(kept(concentrated(k), "ada", rate)[0]).toBeGreaterThanOrEqual(Math.floor(ADA_FLOOR * share) - 15);
    expect(kept(concentrated(k), "layer", rate)[0]).toBeLessThan(kept(concentrated(k), "ada", rate)[0]);
  }
});

/** Head 0's attention on one key; every other key of it scores next to nothing (AdaKV's floor binds there). */
const concentrated = (k: HeadKeys[]) => k.map((x, h) => ({ pos: x.pos, scores: h === 0 ? x.scores.map((v, i) => (i === 7 ? 1 : v * 1e-9)) : x.scores }));

test("snapkv and streaming give every head the same budget; streaming keeps sinks and the recent window", () => {
  const n = 256;
  const k = keys(n, 3);
  const ctx = ctxFor(n, { maxCacheTokens: 40, protectedWindow: 16 });
  for (const p of [snapKvPolicy, streamingPolicy]) {
    const plan = p.plan(k, ctx, keepBudget(ctx));
    for (const ev of plan) expect(n - ev.length).toBe(40);
  }
  const plan = streamingPolicy.plan(k, ctx, keepBudget(ctx));
  k.forEach((x, h) => {
    const keptPos = Array.from(x.pos).filter((_, i) => !plan[h].includes(i)).sort((a, b) => a - b);
    expect(keptPos).toEqual([0, 1, 2, 3, ...Array.from({ length: 36 }, (_, i) => n - 36 + i)]);
  });
});

test("kvcrush keeps base picks plus evenly spread representatives of what the base evicts", () => {
  const n = 300;
  const k = keys(n, 11);
  for (const anchor of ["mean", "alternate", "random"] as const) {
    const ctx = ctxFor(n, { rate: 4, protectedWindow: 16, crushRatio: 0.25, crushAnchor: anchor });
    const keep = keepBudget(ctx);
    const crush = Math.floor(0.25 * keep);
    const base = kvCompressPolicy.plan(k, ctx, keep - crush);
    const plan = kvCrushPolicy(kvCompressPolicy).plan(k, ctx, keep);
    let rescued = 0;
    plan.forEach((ev, h) => {
      const baseSet = new Set(base[h]);
      for (const i of ev) expect(baseSet.has(i)).toBe(true); // only what the base evicts may go
      rescued += base[h].length - ev.length;
    });
    expect(rescued).toBe(crush);
  }
  // crush_ratio 0 is the base policy
  const ctx0 = ctxFor(n, { rate: 4, crushRatio: 0 });
  expect(kvCrushPolicy(snapKvPolicy).plan(k, ctx0, keepBudget(ctx0))).toEqual(snapKvPolicy.plan(k, ctx0, keepBudget(ctx0)));
});

for (const allocation of ALLOCATIONS) test(`kvcompress (${allocation}) equals the full-sort statement, also when a pass evicts a few keys`, () => {
  for (const [n, extra, seed] of [[2000, 16, 1], [3000, 40, 2], [700, 300, 3], [257, 1, 4], [4000, 0, 5]]) {
    const k = seed % 2 ? keys(n, seed) : concentrated(keys(n, seed));
    const ctx = ctxFor(n, { rate: 1, protectedWindow: 32, allocation });
    // a continual pass: the budget holds all but `extra` keys per head
    const keep = LAYERS * KVH * (n - extra);
    expect(kvCompressPolicy.plan(k, ctx, keep).map((e) => Array.from(e))).toEqual(referenceKvCompress(k, ctx, keep));
    for (const rate of [2, 8, 64]) {
      const budget = keepBudget(ctxFor(n, { rate, protectedWindow: 32 }));
      expect(kvCompressPolicy.plan(k, ctx, budget).map((e) => Array.from(e)), `${allocation} x${rate}`).toEqual(referenceKvCompress(k, ctx, budget));
    }
  }
}, 120_000);

test("smallestSorted puts the k smallest first, in order", () => {
  const a = Float64Array.from(rand(5000, 9).map((x, i) => x + i * 1e-9));
  const want = Array.from(a).sort((x, y) => x - y);
  for (const k of [0, 1, 7, 100, 1249, 1250, 5000]) expect(Array.from(smallestSorted(Float64Array.from(a), k))).toEqual(want.slice(0, k));
});

test("max-pool runs along positions, not slots", () => {
  const k: HeadKeys = { pos: Uint32Array.from([4, 0, 3, 1, 2, 9]), scores: Float32Array.from([0, 5, 0, 0, 0, 1]) };
  // positions 0..4 and 9 in position order: [5, 0, 0, 0, 0, 1]; kernel 3 -> [5, 5, 0, 0, 1, 1]
  expect(Array.from(pooledScores(k, 3))).toEqual([1, 5, 0, 5, 0, 1]);
});

test("proportional shares add up", () => {
  expect(shareProportionally(10, [1, 1, 1])).toEqual([4, 3, 3]);
  expect(shareProportionally(7, [0, 5, 2]).reduce((a, b) => a + b, 0)).toBe(7);
  expect(shareProportionally(5, [0, 0])).toEqual([0, 0]);
});
