// kv_append + paged attention (and the split-K merge) against the CPU reference,
// with scattered blocks and different lengths per KV head; with scoring rows, the
// KV-Compress metric (squared attention summed over queries and the GQA group) too.
import { expect, test } from "bun:test";
import { cdiv, F } from "../src/gpu/kernels.ts";
import * as ref from "./reference.ts";
import { getGpu, maxAbsDiff, rand, readF32, up, variants, zeros } from "./gpu-helpers.ts";

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
    const n = lens0[h] + newTokens;
    const k = new Float32Array(n * D), v = new Float32Array(n * D);
    for (let j = 0; j < n; j++) {
      const src = j < lens0[h] ? qkv1 : qkv2;
      const row = j < lens0[h] ? j : j - lens0[h];
      for (let i = 0; i < D; i++) {
        k[j * D + i] = ref.roundF16(src[row * W + H * D + h * D + i]);
        v[j * D + i] = ref.roundF16(src[row * W + (H + KVH) * D + h * D + i]);
      }
    }
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
