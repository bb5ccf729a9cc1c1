// The cache append (rope_append, its frequencies zero so nothing rotates) + paged
// attention (and the split-K merge) against the CPU reference,
// with scattered blocks and different lengths per KV head; with scoring rows, the
// KV-Compress metric (squared attention summed over queries and the GQA group) too.
// Long file: the decode, tiled prefill and tensor-core prefill kernels are checked on the
// cases one builder makes (scattered blocks, per-head lengths, scoring rows) against one
// CPU reference and against each other.
import { expect, test } from "bun:test";
import { cdiv, KernelContext, type Step } from "../../src/gpu/kernels.ts";
import { f32Bits as F } from "../../src/gpu/params.ts";
import { Usage } from "../../src/gpu/flags.ts";
import { webgpu } from "../../src/gpu/device.ts";
import { ATTN_FIXED_SPLIT_KEYS, ATTN_WORKGROUPS, decodeAttentionFixedPlan, decodeAttentionPlan, decodeAttentionShape, prefillTileName, prefillMmaTiling, prefillTiles, prefillTiling, prefillTilings, type DecodeAttentionChoice, type PrefillMmaTiling, type PrefillTiling } from "../../src/model/attention.ts";
import * as ref from "../fixtures/reference.ts";
import { getGpu, maxAbsDiff, rand, readF32, up, variants, zeros } from "../fixtures/gpu-helpers.ts";

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

interface CaseSeq {
  /** keys each KV head holds before the step */
  lens0: number[];
  /** new rows (tokens) of the step */
  n: number;
  /** how many of the last rows score the cached keys */
  scoreRows?: number;
}

/**
 * Inputs of one step over several sequences: each sequence's context written by
 * rope_append in a first step (every head gets max(lens0) keys; shorter heads report
 * fewer), its new rows appended by the second; block lists of every (sequence, head)
 * reversed and interleaved. Also the CPU reference: outputs, scaled logits and
 * log-sum-exp of the scoring rows (slot order), and the KV-Compress scores.
 */
function buildCase(H: number, KVH: number, D: number, seqs: CaseSeq[], BS = 16) {
  const L = 2, layer = 1;
  const W = (H + 2 * KVH) * D, B = seqs.length;
  const ctxs = seqs.map((s) => Math.max(...s.lens0));
  const maxBlocks = Math.max(...seqs.map((s, b) => Math.ceil((ctxs[b] + s.n) / BS)));
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
  const maxLen = Math.max(...seqs.map((s) => Math.max(...s.lens0) + s.n));
  const scale = F(1 / Math.sqrt(D));

  // reference per sequence: head h sees its first lens0[h] context keys, then the new ones
  const want = new Float32Array(M * H * D);
  const wantScores: Float64Array[][] = [];
  const wantSraw = new Float32Array(Math.max(1, slots) * H * maxLen);
  const wantLse = new Float32Array(Math.max(1, slots) * H);
  const G = H / KVH;
  for (let b = 0, slot = 0; b < B; b++) {
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
    for (let r = n - ns; r < n; r++, slot++) {
      for (let qh = 0; qh < H; qh++) {
        const h = Math.floor(qh / G);
        let mx = -Infinity;
        const s = Array.from({ length: lens[r][h] }, (_, j) => {
          let d = 0;
          for (let i = 0; i < D; i++) d += q[r * H * D + qh * D + i] * keys[h][j * D + i];
          mx = Math.max(mx, d / Math.sqrt(D));
          return d / Math.sqrt(D);
        });
        wantSraw.set(s, (slot * H + qh) * maxLen);
        wantLse[slot * H + qh] = mx + Math.log(s.reduce((a, x) => a + Math.exp(x - mx), 0));
      }
    }
  }

  /** GPU buffers of the case, the second step's cache append recorded on `st`. */
  const upload = async (kc: KernelContext, rowsExtra?: Uint32Array) => {
    const kPool = await zeros(numBlocks * BS * D * 2), vPool = await zeros(numBlocks * BS * D * 2);
    const posPool = await zeros(numBlocks * BS * 4), scorePool = await zeros(numBlocks * BS * 4);
    const bTable = await up(table);
    const bHeads2 = await up(headsFor((b, h) => seqs[b].lens0[h]));
    const rowsAll = new Uint32Array(rows2.length + (rowsExtra?.length ?? 0));
    rowsAll.set(rows2);
    if (rowsExtra) rowsAll.set(rowsExtra, rows2.length);
    const bQkv2 = await up(qkv2), bRows2 = await up(rowsAll);
    // the model's append kernel, every frequency 0: K and V go in as they are, q stays
    const freq4 = cdiv(D / 2, 4);
    const noRope = kc.device.createBuffer({ label: "zero-freq", size: freq4 * 16, usage: Usage.UNIFORM });
    const append = (st: Step, qkv: GPUBuffer, rows: GPUBuffer, heads: GPUBuffer, m: number) =>
      st.dispatch(kc.kernel("rope_append", { FREQ4: freq4 }), [qkv, rows, heads, bTable, kPool, vPool, posPool, scorePool, noRope], [m, D, H, KVH, L, layer, BS, W], [cdiv((H + KVH) * (D / 4), 64), m]);
    let st = kc.step();
    if (M1) append(st, await up(qkv1), await up(rows1), await up(headsFor(() => 0)), M1);
    st.submit();
    st = kc.step();
    append(st, bQkv2, bRows2, bHeads2, M);
    return { st, bTable, bHeads2, bQkv2, bRows2, scorePool, common: [bQkv2, bRows2, bHeads2, bTable, kPool, vPool] };
  };

  /** Summed scores of each scoring sequence's heads, read from the pool through the block tables. */
  const checkScores = async (scorePool: GPUBuffer, name: string, tol = 1e-4) => {
    const pool = await readF32(scorePool, numBlocks * BS);
    for (let b = 0; b < B; b++) {
      if (!seqs[b].scoreRows) continue;
      for (let h = 0; h < KVH; h++) {
        const n = seqs[b].lens0[h] + seqs[b].n;
        const off = (b * KVH + h) * maxBlocks;
        const gotH = Array.from({ length: n }, (_, j) => pool[table[off + Math.floor(j / BS)] * BS + (j % BS)]);
        expect(maxAbsDiff(gotH, wantScores[b][h]), name).toBeLessThan(tol);
      }
    }
  };
  return { L, layer, BS, W, M, maxLen, slots, scoreSeqs, scale, want, wantSraw, wantLse, upload, checkScores };
}

/** Sraw entries the scoring rows must write (keys each slot's row sees), as a mask over [slot][qh][maxLen]. */
function srawMask(H: number, KVH: number, seqs: CaseSeq[], maxLen: number): boolean[] {
  const mask: boolean[] = [];
  const G = H / KVH;
  for (const { lens0, n, scoreRows = 0 } of seqs) {
    for (let r = n - scoreRows; r < n; r++) {
      for (let qh = 0; qh < H; qh++) for (let j = 0; j < maxLen; j++) mask.push(j < lens0[Math.floor(qh / G)] + r + 1);
    }
  }
  return mask;
}

/**
 * attention.wgsl (kernels/attention.wgsl with llama.ts's layout for this group and head
 * dim) on every variant against the CPU reference: outputs; with scoring rows their
 * sraw, lse (attn_merge's when split) and the summed KV-Compress scores. `splitLen`:
 * keys per split (one split when unset).
 */
async function runDecode(H: number, KVH: number, D: number, seqs: CaseSeq[], splitLen?: number, choice: DecodeAttentionChoice = {}) {
  const c = buildCase(H, KVH, D, seqs);
  const shape = decodeAttentionShape(H / KVH, D, undefined, choice);
  const sl = splitLen ?? c.maxLen;
  const ns = Math.ceil(c.maxLen / sl);
  const scoring = c.slots > 0;
  const params = [c.layer, H, KVH, c.L, c.BS, c.W, c.scale, sl, ns, c.maxLen];
  const mask = srawMask(H, KVH, seqs, c.maxLen);
  for (const { name, kc } of await variants()) {
    const { st, bRows2, bHeads2, bTable, scorePool, common } = await c.upload(kc);
    const out = await zeros(c.M * H * D * 4);
    const sraw = await zeros(Math.max(1, c.slots) * H * c.maxLen * 4), lse = await zeros(Math.max(1, c.slots) * H * 4);
    const defs = { ...shape, SPLIT: ns > 1, SCORES: scoring };
    const grid: [number, number, number] = [KVH * shape.NG, c.M, ns];
    if (ns > 1) {
      const ml = await zeros(c.M * H * ns * 8), po = await zeros(c.M * H * ns * D * 4);
      st.dispatch(kc.kernel("attention", defs), scoring ? [...common, ml, po, sraw] : [...common, ml, po], params, grid);
      st.dispatch(kc.kernel("attn_merge", { SCORES: scoring }), scoring ? [ml, po, out, bRows2, lse] : [ml, po, out], [H, D, ns], [H, c.M]);
    } else {
      st.dispatch(kc.kernel("attention", defs), scoring ? [...common, out, sraw, lse] : [...common, out], params, grid);
    }
    if (scoring) {
      st.dispatch(kc.kernel("kv_scores"), [sraw, lse, await up(new Uint32Array(c.scoreSeqs)), bHeads2, bTable, scorePool],
        [c.layer, H, KVH, c.L, c.BS, c.maxLen], [KVH, c.scoreSeqs.length / 4, cdiv(c.maxLen, 64)]);
    }
    st.submit();
    expect(maxAbsDiff(await readF32(out, c.M * H * D), c.want), name).toBeLessThan(2e-4);
    if (!scoring) continue;
    const gotSraw = await readF32(sraw, c.slots * H * c.maxLen);
    const masked = (a: ArrayLike<number>) => Array.from(a).filter((_, i) => mask[i]);
    expect(maxAbsDiff(masked(gotSraw), masked(c.wantSraw.subarray(0, c.slots * H * c.maxLen))), name).toBeLessThan(1e-4);
    expect(maxAbsDiff(await readF32(lse, c.slots * H), c.wantLse.subarray(0, c.slots * H)), name).toBeLessThan(1e-4);
    await c.checkScores(scorePool, name);
  }
}

test("prefill: causal GQA over several tiles", () => runDecode(4, 2, 32, [{ lens0: [0, 0], n: 150 }]), 120_000);
test("decode: one token, per-head lengths differ (D 64, G 3)", () => runDecode(6, 2, 64, [{ lens0: [70, 133], n: 1 }], undefined, { G: 3 }), 120_000);
test("decode split-K with merge (D 16)", () => runDecode(8, 2, 16, [{ lens0: [300, 517], n: 1 }], 130), 120_000);
test("chunked prefill on top of a cache (D 8, G 1)", () => runDecode(4, 4, 8, [{ lens0: [40, 17, 90, 3], n: 33 }]), 120_000);
test("a tile of one key after a full tile", () => runDecode(4, 2, 32, [{ lens0: [128, 64], n: 1 }]), 120_000);
test("observation-window scores (prefill) with per-head lengths", () => runDecode(4, 2, 32, [{ lens0: [37, 90], n: 20, scoreRows: 8 }]), 120_000);
test("decode scores through split-K", () => runDecode(8, 2, 16, [{ lens0: [300, 517], n: 1, scoreRows: 1 }], 130), 120_000);
test("decode D 4 mod 8 (vec2 loads, 3 of 4 lanes live)", () => runDecode(4, 2, 12, [{ lens0: [50, 9], n: 2, scoreRows: 1 }], 20), 120_000);
test("decode D 128, G 1..4, one sequence, unsplit and split past the tile size", async () => {
  for (const G of [1, 2, 3, 4]) {
    await runDecode(2 * G, 2, 128, [{ lens0: [203, 77], n: 1 }], undefined, { G });
    await runDecode(2 * G, 2, 128, [{ lens0: [203, 77], n: 1 }], 48, { G });
  }
}, 300_000);
test("decode D 64, G 1..4, split into many short splits, empty ones past the shorter heads", async () => {
  for (const G of [1, 2, 3, 4]) await runDecode(2 * G, 2, 64, [{ lens0: [333, 21], n: 1 }], 19, { G });
}, 300_000);
test("batched decode: several sequences with their own per-head lengths, split, scores on some (D 128, G 4)", () =>
  runDecode(8, 2, 128, [{ lens0: [100, 37], n: 1, scoreRows: 1 }, { lens0: [5, 260], n: 1 }, { lens0: [64, 64], n: 1, scoreRows: 1 }, { lens0: [0, 1], n: 1 }], 40, { G: 4 }), 120_000);
test("batched decode: lookahead rows (several rows per sequence), scores, D 64 G 4, unsplit and split", async () => {
  const seqs = [{ lens0: [90, 31], n: 7, scoreRows: 7 }, { lens0: [17, 170], n: 3, scoreRows: 1 }, { lens0: [1, 2], n: 2 }];
  await runDecode(8, 2, 64, seqs, undefined, { G: 4 });
  await runDecode(8, 2, 64, seqs, 33, { G: 4 });
  await runDecode(8, 2, 64, seqs, 33);
}, 120_000);
test("decode: a GQA group of 16 takes two workgroups of 8 heads", () => runDecode(16, 1, 32, [{ lens0: [150], n: 1, scoreRows: 1 }], 64, { G: 8 }), 120_000);

test("decode split plan: tiles of keys until the GPU fills, one split once the batch does", () => {
  const { BK } = decodeAttentionShape(4, 128);
  expect(decodeAttentionPlan(8, BK + 7, BK)).toEqual({ nsplit: 1, splitLen: BK + 7 });
  const p = decodeAttentionPlan(8, 8193, BK);
  expect(p.nsplit * 8).toBeGreaterThanOrEqual(256);
  expect(p.splitLen).toBeGreaterThanOrEqual(BK);
  expect(p.nsplit * p.splitLen).toBeGreaterThanOrEqual(8193);
  expect(decodeAttentionPlan(8, 256, BK).nsplit).toBe(256 / BK);
  expect(decodeAttentionPlan(ATTN_WORKGROUPS, 8193, BK)).toEqual({ nsplit: 1, splitLen: 8193 });
  for (let groups = 8; groups < 4096; groups *= 2) {
    const q = decodeAttentionPlan(groups, 4096, BK);
    expect(q.nsplit === 1 || q.nsplit * groups <= 2 * ATTN_WORKGROUPS).toBe(true);
  }
});

test("fixed split plan: the same key offsets whatever the batch's longest sequence", () => {
  const K = ATTN_FIXED_SPLIT_KEYS;
  expect(decodeAttentionFixedPlan(K)).toEqual({ nsplit: 1, splitLen: K });
  expect(decodeAttentionFixedPlan(7)).toEqual({ nsplit: 1, splitLen: 7 });
  for (const maxLen of [K + 1, 3 * K, 8193]) expect(decodeAttentionFixedPlan(maxLen)).toEqual({ nsplit: Math.ceil(maxLen / K), splitLen: K });
});

// --- the tiled prefill kernel (attention_prefill.wgsl) ---
// Several sequences in one step, each with its own per-head lengths and scattered
// block tables (interleaved across sequences), new rows on top (chunked prefill);
// output against the CPU reference, and with scoring rows sraw / lse against
// attention.wgsl on the same inputs and the summed scores against the reference.

/**
 * The tiled prefill kernel (or, with `mma`, the tensor-core one, whose f16 queries and
 * probabilities loosen the tolerances) against the reference and attention.wgsl.
 */
async function runTiled(H: number, KVH: number, D: number, seqs: CaseSeq[], nsplit = 1, tile?: PrefillTiling, mma?: PrefillMmaTiling) {
  const tiling = tile ?? prefillTiling(H / KVH, D);
  if (!tiling) throw new Error(`no tiling for G=${H / KVH} D=${D}`);
  const c = buildCase(H, KVH, D, seqs);
  const { M, maxLen, slots } = c;
  const tiles = prefillTiles(seqs.map((s) => s.n), seqs.map((s) => Math.max(...s.lens0)), mma?.BQ ?? tiling.BQ);
  const nTiles = tiles.length / 4;
  const tol = mma ? { out: 4e-3, sraw: 2e-2, scores: 5e-3 } : { out: 2e-4, sraw: 1e-4, scores: 1e-4 };
  for (const { name, kc } of mma ? [{ name: "mma", kc: new KernelContext(await getGpu()) }] : await variants()) {
    const { st, bHeads2, bTable, scorePool, common } = await c.upload(kc, tiles);
    const out = await zeros(M * H * D * 4);
    const scoring = slots > 0;
    const lseOffset = Math.ceil((slots * H * maxLen * 4) / 256) * 256;
    const sraw = await zeros(lseOffset + Math.max(1, slots) * H * 4);
    const splitLen = nsplit > 1 ? Math.ceil(maxLen / nsplit / tiling.BK) * tiling.BK : maxLen;
    const ns = Math.ceil(maxLen / splitLen);
    const params = [c.layer, H, KVH, c.L, c.BS, c.W, c.scale, M, maxLen, lseOffset / 4, splitLen, ns];
    if (mma) {
      st.dispatch(kc.kernel("attention_prefill_mma", { ...mma, SCORES: scoring }), scoring ? [...common, out, sraw] : [...common, out], params, [KVH, nTiles, 1]);
    } else if (ns > 1) {
      const ml = await zeros(M * H * ns * 8), po = await zeros(M * H * ns * D * 4);
      st.dispatch(kc.kernel("attention_prefill", { ...tiling, SPLIT: true, SCORES: false }), [...common, ml, po], params, [KVH, nTiles, ns]);
      st.dispatch(kc.kernel("attn_merge", { SCORES: false }), [ml, po, out], [H, D, ns], [H, M]);
    } else {
      st.dispatch(kc.kernel("attention_prefill", { ...tiling, SPLIT: false, SCORES: scoring }), scoring ? [...common, out, sraw] : [...common, out], params, [KVH, nTiles, 1]);
    }
    // attention.wgsl on the same inputs: the sraw / lse the scoring path writes there
    const oldOut = await zeros(M * H * D * 4), oldSraw = await zeros(Math.max(1, slots) * H * maxLen * 4), oldLse = await zeros(Math.max(1, slots) * H * 4);
    const shape = decodeAttentionShape(H / KVH, D);
    st.dispatch(kc.kernel("attention", { ...shape, SPLIT: false, SCORES: scoring }), scoring ? [...common, oldOut, oldSraw, oldLse] : [...common, oldOut],
      [c.layer, H, KVH, c.L, c.BS, c.W, c.scale, maxLen, 1, maxLen], [KVH * shape.NG, M, 1]);
    if (scoring) {
      st.dispatch(kc.kernel("kv_scores"), [sraw, { buffer: sraw, offset: lseOffset, size: slots * H * 4 }, await up(new Uint32Array(c.scoreSeqs)), bHeads2, bTable, scorePool],
        [c.layer, H, KVH, c.L, c.BS, maxLen], [KVH, c.scoreSeqs.length / 4, cdiv(maxLen, 64)]);
    }
    st.submit();
    const got = await readF32(out, M * H * D);
    // with scoring rows the message carries every figure, so one GPU run shows which part is wrong
    const why = scoring ? `${name}: out ${maxAbsDiff(got, c.want)}, raw scores ${maxAbsDiff(await readF32(sraw, slots * H * maxLen), await readF32(oldSraw, slots * H * maxLen))}, lse ${maxAbsDiff(await readF32(sraw, slots * H, lseOffset / 4), await readF32(oldLse, slots * H))}` : name;
    expect(maxAbsDiff(got, c.want), why).toBeLessThan(tol.out);
    expect(maxAbsDiff(got, await readF32(oldOut, M * H * D)), name).toBeLessThan(tol.out);
    if (!scoring) continue;
    expect(maxAbsDiff(await readF32(sraw, slots * H * maxLen), await readF32(oldSraw, slots * H * maxLen)), name).toBeLessThan(tol.sraw);
    expect(maxAbsDiff(await readF32(sraw, slots * H, lseOffset / 4), await readF32(oldLse, slots * H)), name).toBeLessThan(tol.sraw);
    await c.checkScores(scorePool, name, tol.scores);
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

// the larger tilings the benchmark compares (where the adapter's workgroup storage holds them)
test("tiled prefill: larger tiles (4 query vectors a thread, 32-key tiles, 128 and 256 threads) agree too", async () => {
  const gpu = await getGpu();
  for (const [H, KVH, D] of [[8, 2, 64], [8, 2, 128]]) {
    const all = prefillTilings(H / KVH, D, gpu.limits.maxComputeWorkgroupStorageSize);
    const picks = ["128t/4q/32k", "256t/2q/16k", "64t/4q/16k"].map((n) => all.find((t) => prefillTileName(t) === n)).filter((t) => t !== undefined);
    expect(picks.length, `D=${D}`).toBeGreaterThan(0);
    for (const t of picks) {
      await runTiled(H, KVH, D, [{ lens0: [40, 17], n: 37 }, { lens0: [0, 0], n: 21 }, { lens0: [90, 133], n: 5 }], 1, t);
      await runTiled(H, KVH, D, [{ lens0: [300, 20], n: 70 }, { lens0: [0, 0], n: 9 }], 3, t);
    }
  }
}, 300_000);

test("tiled prefill: the real shapes' tiles fit the default 16 KiB of workgroup storage", async () => {
  const gpu = await getGpu();
  const adapter = (await (await webgpu()).requestAdapter())!;
  const device: GPUDevice = await adapter.requestDevice();
  expect(device.limits.maxComputeWorkgroupStorageSize).toBe(16384);
  const kc = new KernelContext({ ...gpu, device, features: { ...gpu.features, f16: false, f16Weights: false, subgroupMatrix: null, subgroups: false } });
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

test("decode attention: the layouts of head dims 4..256 and groups 1..16 fit the default 16 KiB of workgroup storage", async () => {
  const gpu = await getGpu();
  const adapter = (await (await webgpu()).requestAdapter())!;
  // the storage-buffer count createGpu asks for (SPLIT + SCORES binds 9), the default workgroup storage
  const device: GPUDevice = await adapter.requestDevice({
    requiredFeatures: gpu.features.subgroups ? ["subgroups"] : [],
    // (bun-webgpu takes requiredLimits only with these four present as 0, as createGpu passes them)
    requiredLimits: {
      maxStorageBuffersPerShaderStage: adapter.limits.maxStorageBuffersPerShaderStage,
      maxStorageBuffersInFragmentStage: 0, maxStorageBuffersInVertexStage: 0, maxStorageTexturesInFragmentStage: 0, maxStorageTexturesInVertexStage: 0,
    },
  });
  expect(device.limits.maxComputeWorkgroupStorageSize).toBe(16384);
  for (const subgroups of gpu.features.subgroups ? [false, true] : [false]) {
    const kc = new KernelContext({ ...gpu, device, features: { ...gpu.features, f16: false, f16Weights: false, subgroupMatrix: null, subgroups } });
    for (const [G, D] of [[4, 64], [4, 128], [8, 128], [1, 256], [16, 128], [3, 12], [1, 4], [4, 8]]) {
      const shape = decodeAttentionShape(G, D);
      for (const [SPLIT, SCORES] of [[false, false], [false, true], [true, false], [true, true]]) {
        device.pushErrorScope("validation");
        kc.kernel("attention", { ...shape, SPLIT, SCORES });
        expect(await device.popErrorScope(), `G=${G} D=${D} subgroups=${subgroups}`).toBeNull();
      }
    }
  }
  device.destroy();
});

// the tensor-core kernel (kernels/attention_prefill_mma.wgsl) on the tiled kernel's cases,
// where the adapter has f16 subgroup matrices (Dawn's dawn.node on NVIDIA)
{
  const gpu = await getGpu();
  process.env.KVC_MMA_ATTN = "1"; // the kernel is opt-in for the model; tested wherever it can run
  const mmaFor = (H: number, KVH: number, D: number) => prefillMmaTiling(gpu, H / KVH, D);
  const none = !mmaFor(8, 2, 64);
  test.skipIf(!none)(`tensor-core prefill attention SKIPPED: ${gpu.adapterName} has no f16 subgroup matrices`, () => {});
  const mmaCase = (label: string, H: number, KVH: number, D: number, seqs: CaseSeq[]) =>
    test.skipIf(none)(`tensor-core prefill attention: ${label}`, () => runTiled(H, KVH, D, seqs, 1, undefined, mmaFor(H, KVH, D)!), 120_000);
  mmaCase("one sequence from empty, rows and keys off the tile sizes (D 32, G 2)", 4, 2, 32, [{ lens0: [0, 0], n: 150 }]);
  mmaCase("three sequences, chunked, per-head lengths (D 64, G 4)", 8, 2, 64, [{ lens0: [40, 17], n: 37 }, { lens0: [0, 0], n: 21 }, { lens0: [90, 133], n: 5 }]);
  mmaCase("D 128, G 4, chunked, two sequences", 8, 2, 128, [{ lens0: [70, 3], n: 45 }, { lens0: [16, 32], n: 16 }]);
  mmaCase("G 3 leaves query vectors of a tile unused (D 16)", 6, 2, 16, [{ lens0: [9, 30], n: 50 }, { lens0: [1, 0], n: 22 }]);
  mmaCase("scoring rows (window, whole chunk, none)", 4, 2, 64, [{ lens0: [37, 90], n: 20, scoreRows: 8 }, { lens0: [0, 0], n: 30, scoreRows: 30 }, { lens0: [5, 64], n: 19 }]);
  mmaCase("D 128, G 8, a long sequence", 16, 2, 128, [{ lens0: [0, 0], n: 300, scoreRows: 16 }]);
}
