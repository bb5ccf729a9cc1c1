// kv_append + paged attention (and the split-K merge) against the CPU reference,
// with scattered blocks and different lengths per KV head; with scoring rows, the
// KV-Compress metric (squared attention summed over queries and the GQA group) too.
import { expect, test } from "bun:test";
import { cdiv, F, KernelContext } from "../src/gpu/kernels.ts";
import { prefillTiles, prefillTiling } from "../src/model/llama.ts";
import * as ref from "./reference.ts";
import { getGpu, maxAbsDiff, rand, readF32, up, variants, zeros } from "./gpu-helpers.ts";

const NO_SLOT = 0xffffffff;

/** Head h's n cached keys and values as the pool holds them (f16), key j from qkv row at(j). */
function headKV(H: number, KVH: number, D: number, h: number, n: number, at: (j: number) => [Float32Array, number]) {
  const W = (H + 2 * KVH) * D;
  const k = new Float32Array(n * D), v = new Float32Array(n * D);
  for (let j = 0; j < n; j++) {
    const [src, row] = at(j);
    for (let i = 0; i < D; i++) {
      k[j * D + i] = ref.roundF16(src[row * W + H * D + h * D + i]);
      v[j * D + i] = ref.roundF16(src[row * W + (H + KVH) * D + h * D + i]);
    }
  }
  return { k, v };
}

async function runCase(H: number, KVH: number, D: number, lens0: number[], newTokens: number, nsplit: number, scoreRows = 0) {
  const gpu = await getGpu();
  const [{ kc }] = await variants();
  const BS = 16, L = 1, layer = 0;
  const G = H / KVH;
  const W = (H + 2 * KVH) * D;
  const maxBlocks = 64;
  // block tables: head h's blocks are scattered (reverse order, interleaved)
  const table = new Uint32Array(KVH * maxBlocks);
  for (let h = 0; h < KVH; h++) for (let b = 0; b < maxBlocks; b++) table[h * maxBlocks + b] = (maxBlocks - 1 - b) * KVH + h;
  const numBlocks = maxBlocks * KVH;
  const kPool = await zeros(numBlocks * BS * D * 2);
  const vPool = await zeros(numBlocks * BS * D * 2);
  const posPool = await zeros(numBlocks * BS * 4);
  const scorePool = await zeros(numBlocks * BS * 4);
  const keys: Float32Array[] = [], values: Float32Array[] = [];
  const heads = new Uint32Array(KVH * 2);
  // step 1 writes the existing context (lens0[h] tokens; all heads get max(lens0) and
  // shorter heads simply report a shorter length), step 2 appends newTokens and attends
  const ctx = Math.max(...lens0);
  const qkv1 = rand(ctx * W, 7, 2);
  const rows1 = new Uint32Array(ctx * 4);
  for (let i = 0; i < ctx; i++) rows1.set([0, i, i, 0], i * 4);
  for (let h = 0; h < KVH; h++) heads.set([h * maxBlocks, 0], h * 2);
  const bTable = await up(table), bHeads1 = await up(heads);
  let st = kc.step();
  st.dispatch(kc.kernel("kv_append"), [await up(qkv1), await up(rows1), bHeads1, bTable, kPool, vPool, posPool, scorePool], [ctx, D, H, KVH, L, layer, BS, W], [cdiv(KVH * D / 2, 64), ctx]);
  st.submit();
  const qkv2 = rand(newTokens * W, 11, 2);
  const rows2 = new Uint32Array(newTokens * 4);
  const firstScored = newTokens - scoreRows;
  for (let i = 0; i < newTokens; i++) rows2.set([0, i, ctx + i, i >= firstScored ? i - firstScored : 0xffffffff], i * 4);
  for (let h = 0; h < KVH; h++) heads.set([h * maxBlocks, lens0[h]], h * 2);
  const bQkv2 = await up(qkv2), bRows2 = await up(rows2), bHeads2 = await up(heads);
  st = kc.step();
  st.dispatch(kc.kernel("kv_append"), [bQkv2, bRows2, bHeads2, bTable, kPool, vPool, posPool, scorePool], [newTokens, D, H, KVH, L, layer, BS, W], [cdiv(KVH * D / 2, 64), newTokens]);
  const maxLen = Math.max(...lens0) + newTokens;
  const splitLen = nsplit > 1 ? Math.ceil(Math.ceil(maxLen / nsplit) / 64) * 64 : maxLen;
  const ns = Math.ceil(maxLen / splitLen);
  const scoring = scoreRows > 0;
  const defs = { WG: 64, G, D, OUTS: cdiv(G * D, 64), SPLIT: ns > 1, SCORES: scoring };
  const params = [layer, H, KVH, L, BS, W, F(1 / Math.sqrt(D)), splitLen, ns, maxLen];
  const out = await zeros(newTokens * H * D * 4);
  const common = [bQkv2, bRows2, bHeads2, bTable, kPool, vPool];
  const sraw = await zeros(Math.max(1, scoreRows) * H * maxLen * 4), lse = await zeros(Math.max(1, scoreRows) * H * 4);
  if (ns > 1) {
    const ml = await zeros(newTokens * H * ns * 8), po = await zeros(newTokens * H * ns * D * 4);
    st.dispatch(kc.kernel("attention", defs), scoring ? [...common, ml, po, sraw] : [...common, ml, po], params, [KVH, newTokens, ns]);
    st.dispatch(kc.kernel("attn_merge", { SCORES: scoring }), scoring ? [ml, po, out, bRows2, lse] : [ml, po, out], [H, D, ns], [H, newTokens]);
  } else {
    st.dispatch(kc.kernel("attention", defs), scoring ? [...common, out, sraw, lse] : [...common, out], params, [KVH, newTokens, 1]);
  }
  if (scoring) {
    const seqs = await up(new Uint32Array([0, 0, scoreRows, firstScored]));
    st.dispatch(kc.kernel("kv_scores"), [sraw, lse, seqs, bHeads2, bTable, scorePool], [layer, H, KVH, L, BS, maxLen], [KVH, 1, cdiv(maxLen, 64)]);
  }
  st.submit();
  const got = await readF32(out, newTokens * H * D);
  // reference: head h sees its first lens0[h] context keys, then the new ones
  for (let h = 0; h < KVH; h++) {
    const { k, v } = headKV(H, KVH, D, h, lens0[h] + newTokens, (j) => (j < lens0[h] ? [qkv1, j] : [qkv2, j - lens0[h]]));
    keys.push(k);
    values.push(v);
  }
  const q = new Float32Array(newTokens * H * D);
  for (let r = 0; r < newTokens; r++) for (let i = 0; i < H * D; i++) q[r * H * D + i] = qkv2[r * W + i];
  const lens = Array.from({ length: newTokens }, (_, r) => lens0.map((l) => l + r + 1));
  const want = ref.attention(q, keys, values, lens, H, KVH, D);
  expect(maxAbsDiff(got, want)).toBeLessThan(2e-4);
  if (scoring) {
    const wantScores = ref.attentionScores(q.slice(firstScored * H * D), keys, lens.slice(firstScored), H, KVH, D);
    const pool = await readF32(scorePool, numBlocks * BS);
    for (let h = 0; h < KVH; h++) {
      const n = lens0[h] + newTokens;
      const gotH = Array.from({ length: n }, (_, j) => pool[table[h * maxBlocks + Math.floor(j / BS)] * BS + (j % BS)]);
      expect(maxAbsDiff(gotH, wantScores[h])).toBeLessThan(1e-4);
    }
  }
  void gpu;
}

test("prefill: causal GQA over several tiles", () => runCase(4, 2, 32, [0, 0], 150, 1), 60_000);
test("decode: one token, per-head lengths differ", () => runCase(6, 2, 64, [70, 133], 1, 1), 60_000);
test("decode split-K with merge", () => runCase(8, 2, 16, [300, 517], 1, 4), 60_000);
test("chunked prefill on top of a cache", () => runCase(4, 4, 8, [40, 17, 90, 3], 33, 1), 60_000);
test("a tile of one key after a full tile", () => runCase(4, 2, 32, [64, 64], 1, 1), 60_000);
test("observation-window scores (prefill) with per-head lengths", () => runCase(4, 2, 32, [37, 90], 20, 1, 8), 60_000);
test("decode scores through split-K", () => runCase(8, 2, 16, [300, 517], 1, 4, 1), 60_000);

// --- the tiled prefill kernel (attention_prefill.wgsl) ---
// Several sequences in one step, each with its own per-head lengths and scattered
// block tables (interleaved across sequences), new rows on top (chunked prefill);
// output against the CPU reference, and with scoring rows sraw / lse against
// attention.wgsl on the same inputs and the summed scores against the reference.

interface TiledSeq {
  lens0: number[];
  n: number;
  scoreRows?: number;
}

async function runTiled(H: number, KVH: number, D: number, seqs: TiledSeq[], nsplit = 1) {
  const tiling = prefillTiling(H / KVH, D);
  if (!tiling) throw new Error(`no tiling for G=${H / KVH} D=${D}`);
  const BS = 16, L = 2, layer = 1;
  const G = H / KVH, W = (H + 2 * KVH) * D, B = seqs.length;
  const ctxs = seqs.map((s) => Math.max(...s.lens0));
  const maxBlocks = Math.max(...seqs.map((s, b) => Math.ceil((ctxs[b] + s.n) / BS)));
  // block list of (b, h): offset (b * KVH + h) * maxBlocks; blocks reversed and interleaved over every (b, h)
  const lists = B * KVH;
  const table = new Uint32Array(lists * maxBlocks);
  for (let x = 0; x < lists; x++) for (let k = 0; k < maxBlocks; k++) table[x * maxBlocks + k] = (maxBlocks - 1 - k) * lists + x;
  const numBlocks = lists * maxBlocks;
  const headsFor = (lens: (b: number, h: number) => number) => {
    const t = new Uint32Array(B * L * KVH * 2);
    for (let b = 0; b < B; b++) for (let h = 0; h < KVH; h++) t.set([(b * KVH + h) * maxBlocks, lens(b, h)], ((b * L + layer) * KVH + h) * 2);
    return t;
  };
  const M1 = ctxs.reduce((a, c) => a + c, 0), M = seqs.reduce((a, s) => a + s.n, 0);
  const qkv1 = rand(Math.max(1, M1) * W, 5, 2), qkv2 = rand(M * W, 13, 2);
  const rows1 = new Uint32Array(Math.max(1, M1) * 4), rows2 = new Uint32Array(M * 4);
  const first1: number[] = [], first2: number[] = [];
  const scoreSeqs: number[] = [];
  let slots = 0;
  for (let b = 0, r1 = 0, r2 = 0; b < B; b++) {
    first1.push(r1);
    first2.push(r2);
    for (let i = 0; i < ctxs[b]; i++, r1++) rows1.set([b, i, i, NO_SLOT], r1 * 4);
    const nScore = seqs[b].scoreRows ?? 0;
    if (nScore) scoreSeqs.push(b, slots, nScore, seqs[b].n - nScore);
    for (let i = 0; i < seqs[b].n; i++, r2++) rows2.set([b, i, ctxs[b] + i, i >= seqs[b].n - nScore ? slots++ : NO_SLOT], r2 * 4);
  }
  const tiles = prefillTiles(seqs.map((s) => s.n), seqs.map((s) => Math.max(...s.lens0)), tiling.BQ);
  const nTiles = tiles.length / 4;
  const rowsTiled = new Uint32Array(M * 4 + tiles.length);
  rowsTiled.set(rows2);
  rowsTiled.set(tiles, M * 4);
  const maxLen = Math.max(...seqs.map((s) => Math.max(...s.lens0) + s.n));
  const scale = F(1 / Math.sqrt(D));

  // reference per sequence: head h sees its first lens0[h] context keys, then the new ones
  const want = new Float32Array(M * H * D);
  const wantScores: Float64Array[][] = [];
  for (let b = 0; b < B; b++) {
    const { lens0, n } = seqs[b];
    const keys: Float32Array[] = [], values: Float32Array[] = [];
    for (let h = 0; h < KVH; h++) {
      const { k, v } = headKV(H, KVH, D, h, lens0[h] + n, (j) => (j < lens0[h] ? [qkv1, first1[b] + j] : [qkv2, first2[b] + j - lens0[h]]));
      keys.push(k);
      values.push(v);
    }
    const q = new Float32Array(n * H * D);
    for (let r = 0; r < n; r++) for (let i = 0; i < H * D; i++) q[r * H * D + i] = qkv2[(first2[b] + r) * W + i];
    const lens = Array.from({ length: n }, (_, r) => lens0.map((l) => l + r + 1));
    want.set(ref.attention(q, keys, values, lens, H, KVH, D), first2[b] * H * D);
    const ns = seqs[b].scoreRows ?? 0;
    wantScores.push(ns ? ref.attentionScores(q.slice((n - ns) * H * D), keys, lens.slice(n - ns), H, KVH, D) : []);
  }

  for (const { name, kc } of await variants()) {
    const kPool = await zeros(numBlocks * BS * D * 2), vPool = await zeros(numBlocks * BS * D * 2);
    const posPool = await zeros(numBlocks * BS * 4), scorePool = await zeros(numBlocks * BS * 4);
    const bTable = await up(table);
    const bHeads2 = await up(headsFor((b, h) => seqs[b].lens0[h]));
    const bQkv2 = await up(qkv2), bRows2 = await up(rowsTiled);
    let st = kc.step();
    // step 1: each sequence's context (every head gets max(lens0) keys; shorter heads report fewer)
    if (M1) st.dispatch(kc.kernel("kv_append"), [await up(qkv1), await up(rows1), await up(headsFor(() => 0)), bTable, kPool, vPool, posPool, scorePool], [M1, D, H, KVH, L, layer, BS, W], [cdiv(KVH * D / 2, 64), M1]);
    st.submit();
    st = kc.step();
    st.dispatch(kc.kernel("kv_append"), [bQkv2, bRows2, bHeads2, bTable, kPool, vPool, posPool, scorePool], [M, D, H, KVH, L, layer, BS, W], [cdiv(KVH * D / 2, 64), M]);
    const out = await zeros(M * H * D * 4);
    const scoring = slots > 0;
    const lseOffset = Math.ceil((slots * H * maxLen * 4) / 256) * 256;
    const sraw = await zeros(lseOffset + Math.max(1, slots) * H * 4);
    const common = [bQkv2, bRows2, bHeads2, bTable, kPool, vPool];
    const splitLen = nsplit > 1 ? Math.ceil(maxLen / nsplit / tiling.BK) * tiling.BK : maxLen;
    const ns = Math.ceil(maxLen / splitLen);
    const params = [layer, H, KVH, L, BS, W, scale, M, maxLen, lseOffset / 4, splitLen, ns];
    if (ns > 1) {
      const ml = await zeros(M * H * ns * 8), po = await zeros(M * H * ns * D * 4);
      st.dispatch(kc.kernel("attention_prefill", { ...tiling, SPLIT: true, SCORES: false }), [...common, ml, po], params, [KVH, nTiles, ns]);
      st.dispatch(kc.kernel("attn_merge", { SCORES: false }), [ml, po, out], [H, D, ns], [H, M]);
    } else {
      st.dispatch(kc.kernel("attention_prefill", { ...tiling, SPLIT: false, SCORES: scoring }), scoring ? [...common, out, sraw] : [...common, out], params, [KVH, nTiles, 1]);
    }
    // attention.wgsl on the same inputs: the sraw / lse the scoring path wrote before
    const oldOut = await zeros(M * H * D * 4), oldSraw = await zeros(Math.max(1, slots) * H * maxLen * 4), oldLse = await zeros(Math.max(1, slots) * H * 4);
    const oldDefs = { WG: 64, G, D, OUTS: cdiv(G * D, 64), SPLIT: false, SCORES: scoring };
    st.dispatch(kc.kernel("attention", oldDefs), scoring ? [...common, oldOut, oldSraw, oldLse] : [...common, oldOut], [layer, H, KVH, L, BS, W, scale, maxLen, 1, maxLen], [KVH, M, 1]);
    if (scoring) {
      st.dispatch(kc.kernel("kv_scores"), [sraw, { buffer: sraw, offset: lseOffset, size: slots * H * 4 }, await up(new Uint32Array(scoreSeqs)), bHeads2, bTable, scorePool],
        [layer, H, KVH, L, BS, maxLen], [KVH, scoreSeqs.length / 4, cdiv(maxLen, 64)]);
    }
    st.submit();
    const got = await readF32(out, M * H * D);
    expect(maxAbsDiff(got, want), name).toBeLessThan(2e-4);
    expect(maxAbsDiff(got, await readF32(oldOut, M * H * D)), name).toBeLessThan(2e-4);
    if (!scoring) continue;
    expect(maxAbsDiff(await readF32(sraw, slots * H * maxLen), await readF32(oldSraw, slots * H * maxLen)), name).toBeLessThan(1e-4);
    expect(maxAbsDiff(await readF32(sraw, slots * H, lseOffset / 4), await readF32(oldLse, slots * H)), name).toBeLessThan(1e-4);
    const pool = await readF32(scorePool, numBlocks * BS);
    for (let b = 0; b < B; b++) {
      if (!seqs[b].scoreRows) continue;
      for (let h = 0; h < KVH; h++) {
        const n = seqs[b].lens0[h] + seqs[b].n;
        const off = (b * KVH + h) * maxBlocks;
        const gotH = Array.from({ length: n }, (_, j) => pool[table[off + Math.floor(j / BS)] * BS + (j % BS)]);
        expect(maxAbsDiff(gotH, wantScores[b][h]), name).toBeLessThan(1e-4);
      }
    }
  }
}

test("tiled prefill: one sequence from empty, rows and keys off the tile sizes (D 32, G 2)", () => runTiled(4, 2, 32, [{ lens0: [0, 0], n: 150 }]), 120_000);
test("tiled prefill: three sequences, chunked, per-head lengths (D 64, G 4)", () =>
  runTiled(8, 2, 64, [{ lens0: [40, 17], n: 37 }, { lens0: [0, 0], n: 21 }, { lens0: [90, 133], n: 5 }]), 120_000);
test("tiled prefill: D 128, G 4, chunked, two sequences", () => runTiled(8, 2, 128, [{ lens0: [70, 3], n: 45 }, { lens0: [16, 32], n: 16 }]), 120_000);
test("tiled prefill: G 3 leaves query vectors of a tile unused (D 16)", () => runTiled(6, 2, 16, [{ lens0: [9, 30], n: 50 }, { lens0: [1, 0], n: 22 }]), 120_000);
test("tiled prefill: D 8, G 4, one output chunk per thread", () => runTiled(4, 1, 8, [{ lens0: [25], n: 40 }]), 120_000);
test("tiled prefill split-K: splits past some tiles' last key write neutral partials (D 64, G 4)", () =>
  runTiled(8, 2, 64, [{ lens0: [300, 20], n: 70 }, { lens0: [0, 0], n: 9 }], 5), 120_000);
test("tiled prefill split-K: D 128, two splits", () => runTiled(8, 2, 128, [{ lens0: [0, 0], n: 100 }], 2), 120_000);
test("tiled prefill: scoring rows (window, whole chunk, none) match attention.wgsl's sraw and lse", () =>
  runTiled(4, 2, 64, [{ lens0: [37, 90], n: 20, scoreRows: 8 }, { lens0: [0, 0], n: 30, scoreRows: 30 }, { lens0: [5, 64], n: 19 }]), 120_000);

test("tiled prefill: the real shapes' tiles fit the default 16 KiB of workgroup storage", async () => {
  const gpu = await getGpu();
  const adapter = await (globalThis as any).navigator.gpu.requestAdapter();
  const device: GPUDevice = await adapter.requestDevice();
  expect(device.limits.maxComputeWorkgroupStorageSize).toBe(16384);
  const kc = new KernelContext({ ...gpu, device, features: { ...gpu.features, f16: false, subgroups: false } });
  for (const [G, D] of [[4, 64], [4, 128], [8, 128], [2, 32], [3, 16], [4, 8]]) {
    const t = prefillTiling(G, D)!;
    for (const SCORES of [false, true]) {
      device.pushErrorScope("validation");
      kc.kernel("attention_prefill", { ...t, SPLIT: false, SCORES });
      kc.kernel("attention_prefill", { ...t, SPLIT: true, SCORES: false });
      expect(await device.popErrorScope(), `G=${G} D=${D}`).toBeNull();
    }
  }
  device.destroy();
});
