// Every compute kernel against its CPU reference on this adapter (lavapipe in CI),
// in each variant the adapter can run: packed-u32 weights, native f16, subgroups.
import { describe, expect, test } from "bun:test";
import { cdiv, F } from "../../src/gpu/kernels.ts";
import { Usage } from "../../src/gpu/flags.ts";
import { f16BitsToF32, toF16Bytes } from "../../src/model/f16.ts";
import { ropeInvFreq } from "../../src/model/config.ts";
import { GEMM_VARIANTS, gemmGrid, gemmKernel } from "../../src/model/gemm.ts";
import { gemvGrid, gemvTileFor, gemvTileName, swigluRuns, type GemvTile } from "../../src/model/llama.ts";
import type { Matrix } from "../../src/model/weights.ts";
import * as ref from "../fixtures/reference.ts";
import { getGpu, maxAbsDiff, rand, readF32, readU32, up, variants, zeros } from "../fixtures/gpu-helpers.ts";

const f16round = (x: Float32Array) => x.map(ref.roundF16);
const GEMV = { WG: 256, BIAS: false, RESIDUAL: false, NORM: false, GATHER: false, SWIGLU: false };
/** The model's GEMV tile at M rows and other shapes (odd tails of N and M, row groups of 32 and 8 lanes). */
const tilesFor = (M: number, norm: boolean, swiglu = false): GemvTile[] => [
  gemvTileFor(M, norm, undefined, undefined, swiglu),
  M === 1 ? { ROWS: 8, BATCH: 1, LANES: 256, KU: 1 } : { ROWS: 2, BATCH: 8, LANES: 256, KU: 1 },
  { ROWS: 2, BATCH: 4, LANES: 32, KU: 2 },
  { ROWS: 4, BATCH: 2, LANES: 8, KU: 3 },
];
const tileName = (t: GemvTile) => `tile ${gemvTileName(t)}`;
/** max |got - want| over max |want| */
const relErr = (got: ArrayLike<number>, want: ArrayLike<number>) => maxAbsDiff(got, want) / Math.max(...Array.from(want, Math.abs));
const poisoned = (n: number) => up(new Float32Array(n).fill(NaN));

describe("matmul", async () => {
  for (const { name, kc } of await variants()) {
    for (const [M, N, K, kind] of [[1, 37, 64, "gemv"], [5, 64, 136, "gemv"], [3, 9, 8, "gemv"]] as const) {
      for (const fused of [false, true]) {
        test(`${name} ${kind} M=${M} N=${N} K=${K}${fused ? " +bias +residual" : ""}`, async () => {
          const w = f16round(rand(N * K, 1, 0.5));
          const x = rand(M * K, 2);
          const bias = rand(N, 3);
          const res = rand(M * N, 4);
          const want = ref.matmul(x, w, M, N, K, fused ? bias : undefined, fused ? res : undefined);
          for (const tile of tilesFor(M, false)) {
            const Y = await up(fused ? res : new Float32Array(M * N));
            const k = kc.kernel(kind, { ...GEMV, ...tile, BIAS: fused, RESIDUAL: fused });
            const st = kc.step();
            const bindings = [await up(toF16Bytes(w)), await up(x), Y];
            if (fused) bindings.push(await up(bias));
            st.dispatch(k, bindings, [K, N, M, N, 0], gemvGrid(tile, M, N, false));
            st.submit();
            expect(maxAbsDiff(await readF32(Y, M * N), want), tileName(tile)).toBeLessThan(1e-3);
          }
        });
      }
    }
    // every GEMM variant; no dimension a multiple of the 64 / 128 tiles, K not of BK = 16
    for (const v of GEMM_VARIANTS) {
      for (const [M, N, K] of [[70, 130, 72], [200, 260, 40], [17, 8, 8]] as const) {
        for (const fused of [false, true]) {
          test(`${name} gemm ${v.name} M=${M} N=${N} K=${K}${fused ? " +bias +residual" : ""}`, async () => {
            const w = f16round(rand(N * K, 11, 0.5));
            const x = rand(M * K, 12);
            const bias = rand(N, 13);
            const res = rand(M * N, 14);
            const Y = await up(fused ? res : new Float32Array(M * N));
            const bindings = [await up(toF16Bytes(w)), await up(x), Y];
            if (fused) bindings.push(await up(bias));
            const st = kc.step();
            st.dispatch(gemmKernel(kc, v, fused, fused), bindings, [K, N, M, N, 0], gemmGrid(v, M, N));
            st.submit();
            const want = ref.matmul(x, w, M, N, K, fused ? bias : undefined, fused ? res : undefined);
            expect(maxAbsDiff(await readF32(Y, M * N), want)).toBeLessThan(1e-3);
          });
        }
      }
      test(`${name} gemm ${v.name} row shards write at their column offset, bias by column`, async () => {
        const M = 150, N = 200, K = 24;
        const w = f16round(rand(N * K, 15, 0.5));
        const x = rand(M * K, 16);
        const bias = rand(N, 17);
        const res = rand(M * N, 18);
        const Y = await up(res);
        const bBias = await up(bias);
        const k = gemmKernel(kc, v, true, true);
        const st = kc.step();
        for (const [r0, n] of [[0, 72], [72, 128]]) {
          st.dispatch(k, [await up(toF16Bytes(w.slice(r0 * K, (r0 + n) * K))), await up(x), Y, bBias], [K, n, M, N, r0], gemmGrid(v, M, n));
        }
        st.submit();
        expect(maxAbsDiff(await readF32(Y, M * N), ref.matmul(x, w, M, N, K, bias, res))).toBeLessThan(1e-3);
      });
    }
    test(`${name} row shards write at their column offset`, async () => {
      const M = 2, N = 40, K = 16;
      const w = f16round(rand(N * K, 5));
      const x = rand(M * K, 6);
      const Y = await zeros(M * N * 4);
      const st = kc.step();
      const tile = gemvTileFor(M, false);
      const k = kc.kernel("gemv", { ...GEMV, ...tile });
      for (const [r0, n] of [[0, 24], [24, 16]]) {
        st.dispatch(k, [await up(toF16Bytes(w.slice(r0 * K, (r0 + n) * K))), await up(x), Y], [K, n, M, N, r0], gemvGrid(tile, M, n, false));
      }
      st.submit();
      expect(maxAbsDiff(await readF32(Y, M * N), ref.matmul(x, w, M, N, K))).toBeLessThan(1e-3);
    });

    // an output's value depends on LANES alone: any ROWS x BATCH x KU, and any M, give the same bits
    for (const LANES of [256, 32]) {
      test(`${name} gemv with ${LANES} lanes: every tile and batch size gives the same bits`, async () => {
        const M = 6, N = 21, K = 2056;
        const w = await up(toF16Bytes(f16round(rand(N * K, 7, 0.5))));
        const x = rand(M * K, 8);
        const run = async (tile: GemvTile, rows: number, xs: Float32Array) => {
          const Y = await zeros(rows * N * 4);
          const st = kc.step();
          st.dispatch(kc.kernel("gemv", { ...GEMV, ...tile }), [w, await up(xs), Y], [K, N, rows, N, 0], gemvGrid(tile, rows, N, false));
          st.submit();
          return readF32(Y, rows * N);
        };
        const want = await run({ ROWS: 1, BATCH: 1, LANES, KU: 1 }, M, x);
        for (const tile of [{ ROWS: 4, BATCH: 2, LANES, KU: 1 }, { ROWS: 2, BATCH: 8, LANES, KU: 2 }, { ROWS: 1, BATCH: 4, LANES, KU: 3 }]) {
          expect(Array.from(await run(tile, M, x)), tileName(tile)).toEqual(Array.from(want));
        }
        const alone = await run({ ROWS: 2, BATCH: 1, LANES, KU: 1 }, 1, x.slice(3 * K, 4 * K));
        expect(Array.from(alone)).toEqual(Array.from(want.slice(3 * N, 4 * N)));
      });
    }

    // K = 2056 has each thread take 1 or 2 steps of 8; K = 136 leaves most threads idle
    for (const [M, N, K] of [[1, 37, 2056], [5, 66, 136], [16, 9, 2056]] as const) {
      for (const extra of ["", "bias", "gather"] as const) {
        test(`${name} gemv +norm${extra ? " +" + extra : ""} M=${M} N=${N} K=${K}`, async () => {
          const eps = 1e-5;
          const rows = extra === "gather" ? M + 3 : M;
          const x = rand(rows * K, 20 + M, 3);
          const g = rand(K, 21, 2);
          const w = f16round(rand(N * K, 22, 0.5));
          const bias = rand(N, 23);
          const pick = Array.from({ length: M }, (_, j) => (j * 7 + 2) % rows); // gathered rows, out of order
          const xs = extra === "gather" ? new Float32Array(pick.flatMap((r) => [...x.subarray(r * K, (r + 1) * K)])) : x;
          const want = ref.matmul(ref.rmsnorm(xs, g, M, K, eps), w, M, N, K, extra === "bias" ? bias : undefined);
          for (const tile of tilesFor(M, true)) {
            const Y = await poisoned(M * N);
            const bindings = [await up(toF16Bytes(w)), await up(x), Y];
            if (extra === "bias") bindings.push(await up(bias));
            bindings.push(await up(g));
            if (extra === "gather") bindings.push(await up(new Uint32Array(pick)));
            const k = kc.kernel("gemv", { ...GEMV, ...tile, NORM: true, BIAS: extra === "bias", GATHER: extra === "gather" });
            const st = kc.step();
            st.dispatch(k, bindings, [K, N, M, N, 0, F(eps)], gemvGrid(tile, M, N, false));
            st.submit();
            expect(relErr(await readF32(Y, M * N), want), tileName(tile)).toBeLessThan(1e-4);
          }
        });
      }
    }

    // gate rows 0..F-1 then up rows F..2F-1, in one binding or in row shards cut inside
    // the gate and the up rows (so runs pair different shards)
    for (const [M, cuts, nRuns] of [[1, [], 1], [3, [], 1], [7, [100, 250], 3], [16, [172, 300], 2]] as const) {
      test(`${name} gemv +norm +swiglu M=${M} shards at [${cuts}]`, async () => {
        const eps = 1e-5, Fn = 172, Fp = 176, K = 520;
        const x = rand(M * K, 30 + M, 2);
        const g = rand(K, 31, 2);
        const w = f16round(rand(2 * Fn * K, 32, 0.5));
        const bounds = [0, ...cuts, 2 * Fn];
        const shards = [];
        for (let i = 0; i + 1 < bounds.length; i++) {
          const [a, b] = [bounds[i], bounds[i + 1]];
          shards.push({ buffer: await up(toF16Bytes(w.slice(a * K, b * K))), rowStart: a, rows: b - a });
        }
        const runs = swigluRuns({ N: 2 * Fn, K, shards } as Matrix, Fn, Fp);
        expect(runs.length).toBe(nRuns);
        const bx = await up(x), bg = await up(g);
        const gu = ref.matmul(ref.rmsnorm(x, g, M, K, eps), w, M, 2 * Fn, K);
        const want = ref.swiglu(gu, M, Fn, Fp);
        for (const tile of tilesFor(M, true, true)) {
          const act = await poisoned(M * Fp);
          const k = kc.kernel("gemv", { ...GEMV, ...tile, NORM: true, SWIGLU: true });
          const st = kc.step();
          for (const r of runs) {
            st.dispatch(k, [r.gate.buffer, bx, act, bg, r.up.buffer],
              [K, r.n, M, Fp, r.col, F(eps), r.nW, r.col - r.gate.rowStart, Fn + r.col - r.up.rowStart], gemvGrid(tile, M, r.n, true));
          }
          st.submit();
          const got = await readF32(act, M * Fp);
          expect(relErr(got, want), tileName(tile)).toBeLessThan(1e-4);
          for (let m = 0; m < M; m++) expect([...got.subarray(m * Fp + Fn, (m + 1) * Fp)]).toEqual([0, 0, 0, 0]);
        }
      });
    }
  }
});

// the second half of a split-K matmul: partials summed in order, then bias and residual,
// written at the shard's column offset of a wider output (the tensor-core half is in
// tests/gpu/gemm-mma.test.ts, where the adapter has subgroup matrices)
test("gemm_splitk_sum: partials, bias, residual at a column offset", async () => {
  const { kc } = (await variants())[0];
  const S = 3, M = 5, N = 300, ldy = 320, off = 17;
  const part = rand(S * M * N, 41), bias = rand(ldy, 42), res = rand(M * ldy, 43);
  const Y = await up(res);
  const st = kc.step();
  st.dispatch(kc.kernel("gemm_splitk_sum", { BIAS: true, RESIDUAL: true }), [await up(part), Y, await up(bias)], [N, M, ldy, off, S], [cdiv(N, 256), M]);
  st.submit();
  const want = res.slice();
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let z = 0; z < S; z++) s += part[(z * M + m) * N + n];
      want[m * ldy + off + n] += s + bias[off + n];
    }
  }
  expect(maxAbsDiff(await readF32(Y, M * ldy), want)).toBeLessThan(1e-5);
});

describe("elementwise and norms", async () => {
  const [{ kc }] = await variants();

  test("rmsnorm, plain and gathering rows", async () => {
    const M = 5, D = 200;
    const x = rand(M * D, 8, 3), w = rand(D, 9);
    const y = await zeros(M * D * 4);
    let st = kc.step();
    st.dispatch(kc.kernel("rmsnorm", { GATHER: false }), [await up(x), await up(w), y], [D, F(1e-5), M], [M, 1]);
    st.submit();
    expect(maxAbsDiff(await readF32(y, M * D), ref.rmsnorm(x, w, M, D, 1e-5))).toBeLessThan(1e-4);
    const rows = new Uint32Array([4, 1]);
    const yg = await zeros(2 * D * 4);
    st = kc.step();
    st.dispatch(kc.kernel("rmsnorm", { GATHER: true }), [await up(x), await up(w), yg, await up(rows)], [D, F(1e-5), 2], [2, 1]);
    st.submit();
    const full = ref.rmsnorm(x, w, M, D, 1e-5);
    const want = new Float32Array([...full.slice(4 * D, 5 * D), ...full.slice(D, 2 * D)]);
    expect(maxAbsDiff(await readF32(yg, 2 * D), want)).toBeLessThan(1e-4);
  });

  test("rope_append: rotate_half q in place, roped k and v into scattered cache blocks", async () => {
    // two sequences of 2 new rows, layer 1 of 2; sequence 0's head 0 crosses a block end
    const H = 4, KVH = 2, D = 64, BS = 16, L = 2, layer = 1, ld = (H + 2 * KVH) * D, half = D / 2;
    const inv = ropeInvFreq(D, 500000, { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 });
    const rows = [[0, 0, 15], [0, 1, 100000], [1, 0, 7], [1, 1, 4095]]; // (seq, i, pos)
    const M = rows.length;
    const lenBefore = [[15, 3], [0, 30]]; // [seq][kv head]
    const perHead = 4, numBlocks = 2 * L * KVH * perHead;
    const table = new Uint32Array(numBlocks);
    for (let i = 0; i < numBlocks; i++) table[i] = (i * 5 + 3) % numBlocks; // scattered, a permutation
    const heads = new Uint32Array(2 * L * KVH * 2);
    for (let sq = 0; sq < 2; sq++) for (let h = 0; h < KVH; h++) heads.set([((sq * L + layer) * KVH + h) * perHead, lenBefore[sq][h]], ((sq * L + layer) * KVH + h) * 2);
    const qkv = rand(M * ld, 40, 2);
    const bq = await up(qkv);
    const POISON = 0x7e007e00; // two f16 NaNs
    const kPool = await up(new Uint32Array(numBlocks * BS * half).fill(POISON));
    const vPool = await up(new Uint32Array(numBlocks * BS * half).fill(POISON));
    const posPool = await up(new Uint32Array(numBlocks * BS).fill(0xffffffff));
    const scorePool = await up(new Float32Array(numBlocks * BS).fill(NaN));
    const freq4 = cdiv(half, 4);
    const freqs = new Float32Array(freq4 * 4);
    freqs.set(inv);
    const dev = (await getGpu()).device;
    const bInv = dev.createBuffer({ size: freqs.byteLength, usage: Usage.UNIFORM | Usage.COPY_DST });
    dev.queue.writeBuffer(bInv, 0, freqs);
    const st = kc.step();
    st.dispatch(kc.kernel("rope_append", { FREQ4: freq4 }), [bq, await up(new Uint32Array(rows.flatMap((r) => [...r, 0]))), await up(heads), await up(table), kPool, vPool, posPool, scorePool, bInv],
      [M, D, H, KVH, L, layer, BS, ld], [cdiv((H + KVH) * D / 4, 64), M]);
    st.submit();
    const roped = ref.rope(qkv, M, H + KVH, D, ld, rows.map((r) => r[2]), inv);
    // q roped in place; k and v in QKV as they came
    const wantQkv = qkv.slice();
    for (let m = 0; m < M; m++) wantQkv.set(roped.subarray(m * ld, m * ld + H * D), m * ld);
    expect(maxAbsDiff(await readF32(bq, M * ld), wantQkv)).toBeLessThan(2e-3);
    // expected pools: poison except each new token's slot
    const wantK = new Float32Array(numBlocks * BS * D).fill(NaN), wantV = wantK.slice();
    const wantPos = new Uint32Array(numBlocks * BS).fill(0xffffffff);
    const wantScore = new Float32Array(numBlocks * BS).fill(NaN);
    for (const [m, [sq, i, p]] of rows.entries()) {
      for (let h = 0; h < KVH; h++) {
        const hd = ((sq * L + layer) * KVH + h) * 2;
        const slot = heads[hd + 1] + i;
        const phys = table[heads[hd] + Math.floor(slot / BS)] * BS + (slot % BS);
        const kOff = m * ld + (H + h) * D, vOff = m * ld + (H + KVH + h) * D;
        wantK.set(roped.subarray(kOff, kOff + D).map(ref.roundF16), phys * D);
        wantV.set(qkv.subarray(vOff, vOff + D).map(ref.roundF16), phys * D);
        wantPos[phys] = p;
        wantScore[phys] = 0;
      }
    }
    const f16s = (u: Uint32Array) => Float32Array.from(new Uint16Array(u.buffer), f16BitsToF32);
    // NaN - NaN is NaN and would hide a difference: compare where each is NaN first
    const nanAt = (a: Float32Array) => [...a.keys()].filter((i) => Number.isNaN(a[i]));
    const gotK = f16s(await readU32(kPool, numBlocks * BS * half)), gotV = f16s(await readU32(vPool, numBlocks * BS * half));
    for (const [got, want, tol] of [[gotK, wantK, 2e-3], [gotV, wantV, 0]] as const) {
      expect(nanAt(got)).toEqual(nanAt(want));
      expect(maxAbsDiff(got.map((v) => v || 0), want.map((v) => v || 0))).toBeLessThanOrEqual(tol);
    }
    expect([...(await readU32(posPool, numBlocks * BS))]).toEqual([...wantPos]);
    const gotScore = await readF32(scorePool, numBlocks * BS);
    expect(nanAt(gotScore)).toEqual(nanAt(wantScore));
    expect(maxAbsDiff(gotScore.map((v) => v || 0), wantScore.map((v) => v || 0))).toBe(0);
  });

  test("swiglu with zero padding to a multiple of 8", async () => {
    const M = 3, Fn = 172, Fp = 176;
    const gu = rand(M * 2 * Fn, 11, 4);
    const a = await up(new Float32Array(M * Fp).fill(7));
    const st = kc.step();
    st.dispatch(kc.kernel("swiglu"), [await up(gu), a], [M, Fn, Fp], [cdiv(Fp, 64), M]);
    st.submit();
    expect(maxAbsDiff(await readF32(a, M * Fp), ref.swiglu(gu, M, Fn, Fp))).toBeLessThan(1e-5);
  });

  test("embedding gather across two row shards", async () => {
    const V = 10, D = 24;
    const e = f16round(rand(V * D, 12));
    const toks = new Uint32Array([9, 0, 3, 5, 9]);
    const x = await zeros(toks.length * D * 4);
    const st = kc.step();
    for (const [r0, n] of [[0, 4], [4, 6]]) {
      st.dispatch(kc.kernel("embed"), [await up(toF16Bytes(e.slice(r0 * D, (r0 + n) * D))), await up(toks), x], [D, toks.length, r0, n, 0], [cdiv(D / 2, 64), toks.length]);
    }
    st.submit();
    const want = new Float32Array([...toks].flatMap((t) => [...e.slice(t * D, (t + 1) * D)]));
    expect(maxAbsDiff(await readF32(x, toks.length * D), want)).toBe(0);
  });

  test("convert f32 and bf16 to packed f16", async () => {
    const vals = rand(64, 13, 10);
    const bf = new Uint16Array(vals.length);
    const f32bits = new Uint32Array(vals.buffer);
    for (let i = 0; i < vals.length; i++) bf[i] = f32bits[i] >>> 16;
    for (const [bf16, src] of [[false, vals], [true, bf]] as const) {
      const out = await zeros(vals.length * 2);
      const st = kc.step();
      st.dispatch(kc.kernel("convert", { BF16: bf16 }), [await up(src), out], [vals.length / 2, 0], [1, 1]);
      st.submit();
      const got = new Uint16Array((await readU32(out, vals.length / 2)).buffer);
      const exact = bf16 ? Float32Array.from(bf, (h) => new Float32Array(new Uint32Array([h << 16]).buffer)[0]) : vals;
      const want = toF16Bytes(exact);
      // the GPU may round f32 -> f16 either way: at most one ulp apart
      for (let i = 0; i < vals.length; i++) expect(Math.abs(got[i] - want[i])).toBeLessThanOrEqual(1);
    }
  });
});

describe("sampling", async () => {
  const [{ kc }] = await variants();
  const V = 1000;
  async function gpuSample(logits: Float32Array, rows: { temperature: number; topP: number; topK: number; seed: number; counter: number }[]) {
    const B = rows.length;
    const samp = new Uint32Array(B * 8);
    rows.forEach((r, b) => samp.set([F(r.temperature), F(r.topP), r.topK, r.seed, r.counter], b * 8));
    const out = await zeros(B * 4), hist = await zeros(B * 4 + 16);
    const st = kc.step();
    st.dispatch(kc.kernel("sample"), [await up(logits), await up(samp), out, hist], [V, B, 2], [B]);
    st.submit();
    const got = await readU32(out, B);
    expect([...(await readU32(hist, B + 2)).slice(2)]).toEqual([...got]);
    return [...got];
  }

  test("greedy takes the first maximum", async () => {
    const l = rand(V, 14, 5);
    l[17] = 9;
    l[400] = 9;
    expect(await gpuSample(l, [{ temperature: 0, topP: 1, topK: 0, seed: 1, counter: 0 }])).toEqual([17]);
  });

  test("temperature, top-k and top-p follow the reference draw", async () => {
    const cases = [
      { temperature: 1, topP: 1, topK: 0 },
      { temperature: 0.7, topP: 0.9, topK: 0 },
      { temperature: 1.3, topP: 1, topK: 20 },
      { temperature: 0.9, topP: 0.5, topK: 50 },
    ];
    for (let b = 0; b < 8; b++) {
      const l = rand(V, 100 + b, 6);
      const rows = cases.map((c, i) => ({ ...c, seed: 1234 + b, counter: i }));
      const logits = new Float32Array(rows.length * V);
      rows.forEach((_, i) => logits.set(l, i * V));
      const got = await gpuSample(logits, rows);
      const want = rows.map((r) => ref.sample(l, r.temperature, r.topP, r.topK, ref.uniform(r.seed, r.counter)));
      expect(got).toEqual(want);
    }
  });

  test("top-k 5 only ever returns the 5 largest", async () => {
    const l = rand(V, 15, 2);
    const top5 = [...l.keys()].sort((a, b) => l[b] - l[a]).slice(0, 5);
    const rows = Array.from({ length: 32 }, (_, i) => ({ temperature: 5, topP: 1, topK: 5, seed: 7, counter: i }));
    const logits = new Float32Array(32 * V);
    rows.forEach((_, i) => logits.set(l, i * V));
    const got = await gpuSample(logits, rows);
    for (const t of got) expect(top5).toContain(t);
    expect(new Set(got).size).toBeGreaterThan(1);
  });
});
