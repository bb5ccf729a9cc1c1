// Block-quantized weights: the CPU dequantization against hand-built blocks, and the
// GEMV, GEMM and embedding gather reading quantized rows (kernels/quant.wgsl) against
// a CPU matmul over the dequantized weights, in each variant the adapter runs.
import { describe, expect, test } from "bun:test";
import { cdiv } from "../../src/gpu/kernels.ts";
import { f32Bits as F } from "../../src/gpu/params.ts";
import { f16BitsToF32, f32ToF16Bits, toF16Bytes } from "../../src/model/f16.ts";
import { GEMM_SMALL, GEMM_VARIANTS, gemmGrid } from "../../src/model/gemm.ts";
import { gemvGrid, gemvTileFor, gemvTileName, type GemvTile } from "../../src/model/gemv.ts";
import { parsePieceForce, pieceFits, quantGemvDefines, quantGemvFor, quantGemvName, type PieceForce } from "../../src/model/quant-gemv.ts";
import { dequantize, quantize, QUANT, QUANT_TYPES, rowBytes, toGpuRows, type QuantType } from "../../src/model/quant.ts";
import * as ref from "../fixtures/reference.ts";
import { quantizeShard } from "../../src/model/quantize-weights.ts";
import { maxAbsDiff, rand, readF32, readU32, up, variants, zeros } from "../fixtures/gpu-helpers.ts";

const h = (x: number) => [f32ToF16Bits(x) & 255, f32ToF16Bits(x) >> 8];

describe("dequantize (ggml block layouts)", () => {
  test("q8_0: d then 32 signed bytes", () => {
    const b = new Uint8Array([...h(0.5), ...Array.from({ length: 32 }, (_, j) => (j - 16) & 255)]);
    expect([...dequantize("q8_0", b, 32)]).toEqual(Array.from({ length: 32 }, (_, j) => 0.5 * (j - 16)));
  });
  test("q4_0: low nibbles are weights 0..15, high nibbles 16..31, offset 8", () => {
    const b = new Uint8Array([...h(2), ...Array.from({ length: 16 }, (_, j) => (j & 15) | ((15 - j) << 4))]);
    const want = [...Array.from({ length: 16 }, (_, j) => 2 * (j - 8)), ...Array.from({ length: 16 }, (_, j) => 2 * (7 - j))];
    expect([...dequantize("q4_0", b, 32)]).toEqual(want);
  });
  test("q4_k: six-bit scales and mins, sub-blocks 4..7 take their high bits from bytes 0..7", () => {
    const b = new Uint8Array(144);
    b.set([...h(1), ...h(0.5)], 0);
    // sub-block 1: scale 3, min 2; sub-block 5: scale 17 (low 4 bits in byte 9, high 2 in byte 1), min 33
    b[4 + 1] = 3 | (1 << 6);
    b[4 + 5] = 2 | (2 << 6);
    b[4 + 9] = (17 & 15) | ((33 & 15) << 4);
    for (let l = 0; l < 32; l++) b[16 + l] = (l % 16) << 4; // sub-block 1: high nibbles of chunk 0
    for (let l = 0; l < 32; l++) b[16 + 64 + l] = (15 - (l % 16)) << 4; // sub-block 5: chunk 2, high nibbles
    const y = dequantize("q4_k", b, 256);
    for (let l = 0; l < 32; l++) {
      expect(y[32 + l]).toBe(3 * (l % 16) - 0.5 * 2);
      expect(y[160 + l]).toBe(17 * (15 - (l % 16)) - 0.5 * 33);
    }
  });
  test("q6_k: ql nibbles, qh bit pairs and i8 scales per 16 weights", () => {
    const b = new Uint8Array(210);
    b.set(h(0.25), 208);
    b[192 + 2] = 0xfe; // scale -2 for weights 32..47 (quadrant 1 of the first half)
    b[0 + 32] = 0x05; // ql[32] low nibble: weight 32
    b[128 + 0] = 0b1100; // qh[0] bits 2-3 -> weight 32: high bits 3
    const y = dequantize("q6_k", b, 256);
    expect(y[32]).toBe(0.25 * -2 * ((5 | (3 << 4)) - 32));
  });
  for (const t of QUANT_TYPES) {
    test(`${t}: quantize then dequantize stays within the format's step`, () => {
      const x = rand(1024, 3, 2);
      const y = dequantize(t, quantize(t, x), x.length);
      const step = { q8_0: 2 / 127, q4_0: 2 / 7, q4_k: 4 / 15, q6_k: 2 / 31 }[t];
      expect(maxAbsDiff(x, y)).toBeLessThanOrEqual(step * 1.1);
    });
  }
});

const GEMV = { WG: 256, BIAS: false, RESIDUAL: false, NORM: false, GATHER: false, SWIGLU: false };

/** N x K random weights in format t: the GPU rows and the exact f32 values they hold. */
function weights(t: QuantType, N: number, K: number, seed: number) {
  const q = quantize(t, rand(N * K, seed, 0.5));
  expect(q.length).toBe(N * rowBytes(t, K));
  return { gpu: toGpuRows(t, q, N, K), w: dequantize(t, q, N * K) };
}
const kOf = (t: QuantType) => (QUANT[t].block === 256 ? 512 : 160);

// lavapipe compiles each pipeline slowly: the model's tiles and one odd tile, the
// model's small GEMM (every GEMM variant shares the quantized tile loader)
describe("quantized kernels", async () => {
  for (const { name, kc } of await variants()) {
    for (const t of QUANT_TYPES) {
      const K = kOf(t);
      for (const M of [1, 9]) {
        test(`${name} ${t} gemv M=${M} (+bias +residual)`, async () => {
          const N = 37;
          const { gpu, w } = weights(t, N, K, 1);
          const x = rand(M * K, 2), bias = rand(N, 3), res = rand(M * N, 4);
          const want = ref.matmul(x, w, M, N, K, bias, res);
          const tiles: GemvTile[] = M === 1 ? [gemvTileFor(M, false)] : [gemvTileFor(M, false), { ROWS: 2, BATCH: 4, LANES: 32, KU: 2 }];
          for (const tile of tiles) {
            const Y = await up(res);
            const k = kc.kernel("gemv", { ...GEMV, ...tile, BIAS: true, RESIDUAL: true, QUANT: t });
            const st = kc.step();
            st.dispatch(k, [await up(gpu), await up(x), Y, await up(bias)], [K, N, M, N, 0], gemvGrid(tile, M, N, false));
            st.submit();
            expect(maxAbsDiff(await readF32(Y, M * N), want), gemvTileName(tile)).toBeLessThan(1e-3);
          }
        });
      }
      test(`${name} ${t} gemv +norm +swiglu, gate and up in two buffers`, async () => {
        const M = 2, Fn = 24, eps = 1e-5;
        const gate = weights(t, Fn, K, 5), upw = weights(t, Fn, K, 6);
        const x = rand(M * K, 7, 2), g = rand(K, 8, 2);
        const h1 = ref.rmsnorm(x, g, M, K, eps);
        const w = new Float32Array([...gate.w, ...upw.w]);
        const want = ref.swiglu(ref.matmul(h1, w, M, 2 * Fn, K), M, Fn, Fn);
        const tile = gemvTileFor(M, true, undefined, undefined, true);
        const act = await zeros(M * Fn * 4);
        const k = kc.kernel("gemv", { ...GEMV, ...tile, NORM: true, SWIGLU: true, QUANT: t });
        const st = kc.step();
        st.dispatch(k, [await up(gate.gpu), await up(x), act, await up(g), await up(upw.gpu)], [K, Fn, M, Fn, 0, F(eps), Fn, 0, 0], gemvGrid(tile, M, Fn, true));
        st.submit();
        expect(maxAbsDiff(await readF32(act, M * Fn), want)).toBeLessThan(1e-3);
      });
      for (const v of GEMM_VARIANTS.filter((v) => v.name === GEMM_SMALL)) {
        test(`${name} ${t} gemm ${v.name} M=70 N=130`, async () => {
          const M = 70, N = 130;
          const { gpu, w } = weights(t, N, K, 9);
          const x = rand(M * K, 10);
          const Y = await zeros(M * N * 4);
          const st = kc.step();
          st.dispatch(kc.kernel("gemm", { ...v.defines, BIAS: false, RESIDUAL: false, QUANT: t }), [await up(gpu), await up(x), Y], [K, N, M, N, 0], gemmGrid(v, M, N));
          st.submit();
          expect(maxAbsDiff(await readF32(Y, M * N), ref.matmul(x, w, M, N, K))).toBeLessThan(2e-3);
        });
      }
      test(`${name} ${t} embedding gather of quantized rows`, async () => {
        const V = 11, toks = [3, 0, 10, 3];
        const { gpu, w } = weights(t, V, K, 12);
        const X = await zeros(toks.length * K * 4);
        const st = kc.step();
        st.dispatch(kc.kernel("embed", { QUANT: t }), [await up(gpu), await up(new Uint32Array(toks)), X], [K, toks.length, 0, V, 0], [cdiv(K / 2, 64), toks.length]);
        st.submit();
        const want = new Float32Array(toks.flatMap((id) => [...w.subarray(id * K, (id + 1) * K)]));
        expect(maxAbsDiff(await readF32(X, toks.length * K), want)).toBe(0);
      });
    }
  }
});

// The piece GEMV (kernels/quant_piece.wgsl): every format at a K of an odd block count
// whose rows are still whole 16-byte words (Q8_0, Q4_0, Q6_K: 7 blocks, so the row's d
// words end in a padding half; Q4_K: 3 super-blocks), and each option of the tile
// (rows, lanes, pieces per trip, x in workgroup memory, the exponent trick, loads a
// trip ahead, 8-bit x) in some case.
const PIECE_K: Record<QuantType, number> = { q8_0: 224, q4_0: 224, q4_k: 768, q6_k: 1792 };
/** K of rows that are not whole 16-byte words (Q4_K's always are) */
const UNFIT_K: Partial<Record<QuantType, number>> = { q8_0: 160, q4_0: 160, q6_k: 512 };
const PIECE_CASES: { M: number; force: PieceForce | null }[] = [
  { M: 1, force: null },
  // 4 lanes a row: every format's lanes make several trips (Q8_0, Q4_0: 7 pieces)
  { M: 1, force: { ROWS: 1, LANES: 4, KU: 1, XWG: false, MAGIC: false, PF: true } },
  { M: 2, force: { ROWS: 4, LANES: 64, XWG: false, MAGIC: true } },
];

/** x as XQ8 stages it, dequantized: runs of 16, d = max |x| / 127 (f32), q = round(x / d) to even */
function x8(x: Float32Array): Float32Array {
  const y = new Float32Array(x.length);
  const f = Math.fround;
  for (let r = 0; r < x.length; r += 16) {
    let a = 0;
    for (let i = r; i < r + 16; i++) a = Math.max(a, Math.abs(x[i]));
    const d = f(a / 127), id = d > 0 ? f(1 / d) : 0;
    for (let i = r; i < r + 16; i++) {
      const v = f(x[i] * id), n = Math.floor(v), q = v - n === 0.5 ? (n % 2 === 0 ? n : n + 1) : Math.round(v);
      y[i] = f(q * d);
    }
  }
  return y;
}

describe("piece GEMV of quantized rows", async () => {
  const [{ kc }, ...rest] = await variants();
  // the subgroup reduction where the adapter has one (the u32 kernel context has none)
  const sg = rest.find((v) => v.name.includes("subgroups"))?.kc ?? kc;
  const maxStorage = kc.gpu.limits.maxComputeWorkgroupStorageSize;
  const plan = (c: typeof kc, M: number, t: QuantType, K: number, norm: boolean, swiglu: boolean, force: PieceForce | null) => {
    const q = quantGemvFor(M, t, K, norm, maxStorage, c.gpu.features.subgroups, swiglu, force);
    expect(q.piece).not.toBeNull();
    // a forced option holds (the cases are sized so that x fits in workgroup memory)
    if (force && force !== "old") for (const [k, v] of Object.entries(force)) expect(q.piece![k as keyof typeof force]).toBe(v as never);
    return q;
  };
  for (const t of QUANT_TYPES) {
    const K = PIECE_K[t];
    test(`${t}: which rows the piece GEMV reads`, () => {
      expect(pieceFits(t, K)).toBe(true);
      expect(pieceFits(t, 4096)).toBe(true);
      const bad = UNFIT_K[t];
      if (bad) {
        expect(pieceFits(t, bad)).toBe(false);
        expect(quantGemvFor(1, t, bad, false, maxStorage, true, false, null).piece).toBeNull();
      }
    });
    for (const [i, { M, force }] of PIECE_CASES.entries()) {
      const c = i % 2 ? sg : kc;
      test(`${t} M=${M} ${force ? JSON.stringify(force) : "the planner's tile"} (+bias +residual)`, async () => {
        const N = 37;
        const { gpu, w } = weights(t, N, K, 20 + i);
        const x = rand(M * K, 21, 2), bias = rand(N, 22), res = rand(M * N, 23);
        const q = plan(c, M, t, K, false, false, force);
        const Y = await up(res);
        const k = c.kernel("gemv", { ...GEMV, ...quantGemvDefines(q, t, K), BIAS: true, RESIDUAL: true });
        const st = c.step();
        st.dispatch(k, [await up(gpu), await up(x), Y, await up(bias)], [K, N, M, N, 0], gemvGrid(q.tile, M, N, false));
        st.submit();
        expect(maxAbsDiff(await readF32(Y, M * N), ref.matmul(x, w, M, N, K, bias, res)), quantGemvName(q)).toBeLessThan(1e-3);
      });
    }
    test(`${t} +norm +swiglu, gate and up in two buffers, x in workgroup memory`, async () => {
      const M = 2, Fn = 24, eps = 1e-5;
      const gate = weights(t, Fn, K, 25), upw = weights(t, Fn, K, 26);
      const x = rand(M * K, 27, 2), g = rand(K, 28, 2);
      const want = ref.swiglu(ref.matmul(ref.rmsnorm(x, g, M, K, eps), new Float32Array([...gate.w, ...upw.w]), M, 2 * Fn, K), M, Fn, Fn);
      const q = plan(sg, M, t, K, true, true, { XWG: true, MAGIC: false, PF: true });
      const act = await zeros(M * Fn * 4);
      const k = sg.kernel("gemv", { ...GEMV, ...quantGemvDefines(q, t, K), NORM: true, SWIGLU: true });
      const st = sg.step();
      st.dispatch(k, [await up(gate.gpu), await up(x), act, await up(g), await up(upw.gpu)], [K, Fn, M, Fn, 0, F(eps), Fn, 0, 0], gemvGrid(q.tile, M, Fn, true));
      st.submit();
      expect(maxAbsDiff(await readF32(act, M * Fn), want), quantGemvName(q)).toBeLessThan(1e-3);
    });
  }
  test("q4_k +norm +gather +bias: activation rows picked by a table", async () => {
    const t = "q4_k", K = PIECE_K[t], N = 19, M = 3, rows = 5, eps = 1e-5;
    const { gpu, w } = weights(t, N, K, 30);
    const x = rand(rows * K, 31, 2), g = rand(K, 32, 2), bias = rand(N, 33);
    const pick = [4, 0, 2];
    const xs = new Float32Array(pick.flatMap((r) => [...x.subarray(r * K, (r + 1) * K)]));
    const want = ref.matmul(ref.rmsnorm(xs, g, M, K, eps), w, M, N, K, bias);
    const q = plan(kc, M, t, K, true, false, null);
    const Y = await zeros(M * N * 4);
    const k = kc.kernel("gemv", { ...GEMV, ...quantGemvDefines(q, t, K), NORM: true, GATHER: true, BIAS: true });
    const st = kc.step();
    st.dispatch(k, [await up(gpu), await up(x), Y, await up(bias), await up(g), await up(new Uint32Array(pick))], [K, N, M, N, 0, F(eps), 0, 0, 0], gemvGrid(q.tile, M, N, false));
    st.submit();
    expect(maxAbsDiff(await readF32(Y, M * N), want), quantGemvName(q)).toBeLessThan(1e-3);
  });
  // a row's value depends on LANES alone: alone in a one-row tile with the exponent
  // trick and x in workgroup memory, or in a batch tile without either, the same bits
  test("q4_k: a row's output is the same alone or in a batch, with or without the exponent trick", async () => {
    const t = "q4_k", K = 2048, N = 21, M = 3; // 64 pieces: two trips of 32 lanes
    const { gpu } = weights(t, N, K, 34);
    const x = rand(M * K, 35, 2);
    const [W, X] = [await up(gpu), await up(x)];
    const run = async (c: typeof kc, rows: number, xs: GPUBuffer, force: PieceForce) => {
      const q = plan(c, rows, t, K, false, false, force);
      const Y = await zeros(rows * N * 4);
      const st = c.step();
      st.dispatch(c.kernel("gemv", { ...GEMV, ...quantGemvDefines(q, t, K) }), [W, xs, Y], [K, N, rows, N, 0], gemvGrid(q.tile, rows, N, false));
      st.submit();
      return readF32(Y, rows * N);
    };
    const batch = await run(sg, M, X, { ROWS: 2, LANES: 32, KU: 2, XWG: false, MAGIC: false, PF: false });
    for (let m = 0; m < M; m++) {
      const alone = await run(sg, 1, await up(x.slice(m * K, (m + 1) * K)), { ROWS: 4, LANES: 32, KU: 1, XWG: true, MAGIC: true, PF: true });
      expect([...alone], `row ${m}`).toEqual([...batch.subarray(m * N, (m + 1) * N)]);
    }
  });
  // XQ8: x as 8-bit integers, each run of 16 with d = max |x| / 127: against a CPU
  // matmul over x rounded the same way (4e-6 apart seen), and visibly apart from f32 x
  // (0.05-0.13 here: the rounding of x)
  const XQ8_TOL = 1e-3;
  for (const t of QUANT_TYPES) {
    const K = PIECE_K[t];
    test(`${t} 8-bit x (XQ8) M=2 (+bias +residual)`, async () => {
      const M = 2, N = 37;
      const { gpu, w } = weights(t, N, K, 40);
      const x = rand(M * K, 41, 2), bias = rand(N, 42), res = rand(M * N, 43);
      const q = plan(sg, M, t, K, false, false, { XQ8: true, ROWS: 2, KU: 2 });
      const Y = await up(res);
      const st = sg.step();
      st.dispatch(sg.kernel("gemv", { ...GEMV, ...quantGemvDefines(q, t, K), BIAS: true, RESIDUAL: true }), [await up(gpu), await up(x), Y, await up(bias)], [K, N, M, N, 0], gemvGrid(q.tile, M, N, false));
      st.submit();
      const got = await readF32(Y, M * N);
      expect(maxAbsDiff(got, ref.matmul(x8(x), w, M, N, K, bias, res)), quantGemvName(q)).toBeLessThan(XQ8_TOL);
      expect(maxAbsDiff(got, ref.matmul(x, w, M, N, K, bias, res))).toBeGreaterThan(1e-2);
    });
  }
  test("q4_k 8-bit x +norm +swiglu: a row alone and in a batch agree bit for bit", async () => {
    const t = "q4_k", K = 2048, Fn = 24, eps = 1e-5, M = 3;
    const gate = weights(t, Fn, K, 44), upw = weights(t, Fn, K, 45);
    const x = rand(M * K, 46, 2), g = rand(K, 47, 2);
    const gx = new Float32Array(x.map((v, i) => v * g[i % K]));
    const inv = Array.from({ length: M }, (_, m) => 1 / Math.sqrt(x.subarray(m * K, (m + 1) * K).reduce((a, v) => a + v * v, 0) / K + eps));
    const h = x8(gx).map((v, i) => v * inv[Math.floor(i / K)]);
    const want = ref.swiglu(ref.matmul(h, new Float32Array([...gate.w, ...upw.w]), M, 2 * Fn, K), M, Fn, Fn);
    const [Wg, Wu, G, X] = [await up(gate.gpu), await up(upw.gpu), await up(g), await up(x)];
    const run = async (rows: number, xs: GPUBuffer, force: Exclude<PieceForce, "old">) => {
      const q = plan(sg, rows, t, K, true, true, { XQ8: true, ...force });
      const act = await zeros(rows * Fn * 4);
      const st = sg.step();
      st.dispatch(sg.kernel("gemv", { ...GEMV, ...quantGemvDefines(q, t, K), NORM: true, SWIGLU: true }), [Wg, xs, act, G, Wu], [K, Fn, rows, Fn, 0, F(eps), Fn, 0, 0], gemvGrid(q.tile, rows, Fn, true));
      st.submit();
      return readF32(act, rows * Fn);
    };
    const batch = await run(M, X, { ROWS: 2, KU: 2, PF: false });
    expect(maxAbsDiff(batch, want)).toBeLessThan(XQ8_TOL);
    for (let m = 0; m < M; m++) {
      const alone = await run(1, await up(x.slice(m * K, (m + 1) * K)), { ROWS: 4, KU: 1, PF: true });
      expect([...alone], `row ${m}`).toEqual([...batch.subarray(m * Fn, (m + 1) * Fn)]);
    }
  });
  test("KVC_QGEMV: old, or any of rows, lanes, ku, xwg, magic", () => {
    expect(parsePieceForce("old")).toBe("old");
    expect(parsePieceForce(" ")).toBeNull();
    expect(parsePieceForce("rows=4,lanes=64,xwg=1,magic=0,xq8=1,pf=1")).toEqual({ ROWS: 4, LANES: 64, XWG: true, MAGIC: false, XQ8: true, PF: true });
    expect(() => parsePieceForce("lanes=48")).toThrow(/power of two/);
    expect(() => parsePieceForce("rowz=2")).toThrow(/KVC_QGEMV/);
    expect(quantGemvFor(1, "q4_k", 4096, false, 49152, true, false, "old").piece).toBeNull();
  });
});

describe("on-load quantization (kernels/quantize.wgsl)", async () => {
  const [{ kc }] = await variants();
  for (const t of ["q8_0", "q4_0", "q4_k"] as const) {
    test(`${t}: the GPU's blocks are the CPU reference's`, async () => {
      const N = 5, K = t === "q4_k" ? 512 : 96; // Q8_0 / Q4_0: an odd block count (3) shares the last d word with a zero
      const x = rand(N * K, 40, 0.5).map((v) => f16BitsToF32(f32ToF16Bits(v)));
      const want = toGpuRows(t, quantize(t, x), N, K);
      const src = await up(toF16Bytes(x));
      const q = quantizeShard(kc, { buffer: src, rowStart: 0, rows: N }, K, t, "test");
      expect(q.quant).toBe(t);
      const got = await readU32(q.buffer, want.length);
      // f32 on the GPU, f64 on the host: a value at a rounding midpoint lands one step
      // apart (Q4_K: about 5% of words hold such a nibble or 6-bit scale), never more
      let words = 0, worst = 0;
      want.forEach((w, i) => {
        if (w === got[i]) return;
        words++;
        // Q8_0: signed bytes; Q4_0, Q4_K: nibbles
        const bits = t === "q8_0" ? 8 : 4;
        const field = (v: number, j: number) => (bits === 8 ? ((v >>> (8 * j)) << 24) >> 24 : (v >>> (4 * j)) & 15);
        for (let j = 0; j < 32 / bits; j++) worst = Math.max(worst, Math.abs(field(w, j) - field(got[i], j)));
      });
      expect(worst).toBeLessThanOrEqual(1);
      expect(words / want.length).toBeLessThan(0.1);
    });
  }
  // a vocabulary's rows (Llama 3: 128256) are more than one grid dimension's 65535 workgroups
  test("q4_k: rows past 65535 are quantized too", async () => {
    const N = 65540, K = 256;
    const x = rand(N * K, 41, 0.5).map((v) => f16BitsToF32(f32ToF16Bits(v)));
    const q = quantizeShard(kc, { buffer: await up(toF16Bytes(x)), rowStart: 0, rows: N }, K, "q4_k", "test");
    const words = toGpuRows("q4_k", quantize("q4_k", x.subarray(0, K)), 1, K).length;
    const got = await readU32(q.buffer, N * words);
    const row = (r: number) => Array.from(got.subarray(r * words, (r + 1) * words));
    const cpu = (r: number) => Array.from(toGpuRows("q4_k", quantize("q4_k", x.subarray(r * K, (r + 1) * K)), 1, K));
    const near = (a: number[], b: number[]) => a.filter((w, i) => w !== b[i]).length <= Math.ceil(0.1 * a.length);
    for (const r of [0, 65534, 65535, 65539]) expect(near(row(r), cpu(r)), `row ${r}`).toBe(true);
  });
});
