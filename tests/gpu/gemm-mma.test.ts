// Tensor-core GEMM (kernels/gemm_mma.wgsl) against the CPU reference, every variant.
// It needs f16 subgroup matrices (Dawn on NVIDIA with dawn.node's toggles): where the
// adapter has none, the tests are skipped under a name that says so.
import { expect, test } from "bun:test";
import { MMA_VARIANTS, mmaBytes, mmaGrid, mmaKernel, mmaTiles, skinnyCols, skinnyKernel, splitK, type SkinnyShape } from "../../src/model/gemm.ts";
import { KernelContext } from "../../src/gpu/kernels.ts";
import { toF16Bytes } from "../../src/model/f16.ts";
import { getGpu, maxAbsDiff, rand, readF32, up } from "../fixtures/gpu-helpers.ts";
import * as ref from "../fixtures/reference.ts";

const f16round = (x: Float32Array) => x.map(ref.roundF16);

const gpu = await getGpu();
const sm = gpu.features.subgroupMatrix;
const kc = new KernelContext(gpu);
const fits = MMA_VARIANTS.filter((v) => mmaBytes(v) <= gpu.limits.maxComputeWorkgroupStorageSize);

test.skipIf(!!sm)(`tensor-core GEMM SKIPPED: ${gpu.adapterName} has no f16 subgroup matrices`, () => {});

// f16-rounded X as well: the kernel stages X as f16, so only the summation order differs
for (const v of sm ? fits : []) {
  for (const [M, N, K] of [[1, 40, 32], [33, 130, 72], [200, 260, 40], [128, 256, 1024], [300, 70, 264]] as const) {
    for (const fused of [false, true]) {
      test(`gemm_mma ${v.name} M=${M} N=${N} K=${K}${fused ? " +bias +residual" : ""}`, async () => {
        const w = f16round(rand(N * K, 11, 0.5));
        const x = f16round(rand(M * K, 12));
        const bias = rand(N, 13);
        const res = rand(M * N, 14);
        const Y = await up(fused ? res : new Float32Array(M * N));
        const bindings = [await up(toF16Bytes(w)), await up(x), Y];
        if (fused) bindings.push(await up(bias));
        const st = kc.step();
        st.dispatch(mmaKernel(kc, v, gpu.features.subgroupMaxSize, fused, fused), bindings, [K, N, M, N, 0], mmaGrid(v, M, N));
        st.submit();
        const want = ref.matmul(x, w, M, N, K, fused ? bias : undefined, fused ? res : undefined);
        expect(maxAbsDiff(await readF32(Y, M * N), want)).toBeLessThan(2e-3);
      });
    }
  }
  test(`gemm_mma ${v.name} row shards write at their column offset`, async () => {
    const M = 150, N = 200, K = 24;
    const w = f16round(rand(N * K, 15, 0.5));
    const x = f16round(rand(M * K, 16));
    const bias = rand(N, 17);
    const res = rand(M * N, 18);
    const Y = await up(res);
    const bBias = await up(bias);
    const k = mmaKernel(kc, v, gpu.features.subgroupMaxSize, true, true);
    const st = kc.step();
    for (const [r0, n] of [[0, 72], [72, 128]]) {
      st.dispatch(k, [await up(toF16Bytes(w.slice(r0 * K, (r0 + n) * K))), await up(x), Y, bBias], [K, n, M, N, r0], mmaGrid(v, M, n));
    }
    st.submit();
    expect(maxAbsDiff(await readF32(Y, M * N), ref.matmul(x, w, M, N, K, bias, res))).toBeLessThan(2e-3);
  });
}

// split-K: partial tiles per K range (gemm_mma SPLITK), then gemm_splitk_sum adds them,
// the bias and the residual; K ranges that end off the 32-wide step and a short last split
for (const v of sm ? fits : []) {
  for (const [M, N, K, splits] of [[8, 130, 1000, 3], [33, 260, 2048, 8], [16, 64, 96, 2]] as const) {
    test(`gemm_mma ${v.name} split-K M=${M} N=${N} K=${K} into ${splits} +bias +residual`, async () => {
      const w = f16round(rand(N * K, 31, 0.5));
      const x = f16round(rand(M * K, 32));
      const bias = rand(N, 33);
      const res = rand(M * N, 34);
      const kSplit = Math.ceil(K / splits / 64) * 64;
      const n = Math.ceil(K / kSplit);
      const part = await up(new Float32Array(n * M * N).fill(NaN));
      const Y = await up(res);
      const st = kc.step();
      st.dispatch(mmaKernel(kc, v, gpu.features.subgroupMaxSize, true, true, true), [await up(toF16Bytes(w)), await up(x), part], [K, N, M, N, 0, kSplit], [...mmaGrid(v, M, N), n]);
      st.dispatch(kc.kernel("gemm_splitk_sum", { BIAS: true, RESIDUAL: true }), [part, Y, await up(bias)], [N, M, N, 0, n], [Math.ceil(N / 256), M]);
      st.submit();
      expect(maxAbsDiff(await readF32(Y, M * N), ref.matmul(x, w, M, N, K, bias, res))).toBeLessThan(2e-3);
    });
  }
}

test("splitK plans: few tiles split up to SPLITK_MAX on 64-wide K runs, many tiles never", () => {
  const v = MMA_VARIANTS.find((x) => x.name === "mma32d")!;
  expect(mmaTiles(v, 32, 2048)).toBe(16);
  expect(splitK(mmaTiles(v, 32, 2048), 2048, 512)).toEqual({ splits: 8, kSplit: 256 });
  expect(splitK(16, 100, 512)).toBeNull(); // K too short to split
  expect(splitK(mmaTiles(v, 32, 128256), 2048, 512)).toBeNull(); // the LM head: 1002 tiles
  expect(splitK(16, 2048, 0)).toBeNull(); // off
  const p = splitK(24, 1000, 512)!;
  expect(p.kSplit % 64).toBe(0);
  expect((p.splits - 1) * p.kSplit < 1000 && p.splits * p.kSplit >= 1000).toBe(true);
});

// the decode-batch kernel (gemm_mma_skinny.wgsl): 1..64 rows, whole and split-K, N past
// its 64- or 128-column tiles (a subgroup or one of its column blocks with no columns of
// its own), K off the 256-wide rounds and off the KU-step runs; every shape (NB, KU)
const SHAPES: SkinnyShape[] = [{ NB: 1, KU: 4 }, { NB: 2, KU: 4 }, { NB: 2, KU: 8 }, { NB: 1, KU: 8 }];
const skinnyCases = sm ? ([[1, 80, 272, 1], [16, 64, 96, 1], [20, 144, 1040, 3], [64, 48, 512, 2], [33, 2048, 2048, 8], [32, 208, 656, 1]] as const) : [];
for (const [M, N, K, splits] of skinnyCases) for (const shape of SHAPES) {
  test(`gemm_mma_skinny NB${shape.NB} KU${shape.KU} M=${M} N=${N} K=${K}${splits > 1 ? ` split-K into ${splits}` : ""} +bias +residual`, async () => {
    const w = f16round(rand(N * K, 51, 0.5));
    const x = f16round(rand(M * K, 52));
    const bias = rand(N, 53);
    const res = rand(M * N, 54);
    const Y = await up(res);
    const bW = await up(toF16Bytes(w)), bX = await up(x), bB = await up(bias);
    const st = kc.step();
    const sg = gpu.features.subgroupMaxSize;
    if (splits > 1) {
      const kSplit = Math.ceil(K / splits / 64) * 64;
      const n = Math.ceil(K / kSplit);
      const part = await up(new Float32Array(n * M * N).fill(NaN));
      st.dispatch(skinnyKernel(kc, M, sg, true, true, true, shape), [bW, bX, part], [K, N, M, N, 0, kSplit], [1, Math.ceil(N / skinnyCols(shape)), n]);
      st.dispatch(kc.kernel("gemm_splitk_sum", { BIAS: true, RESIDUAL: true }), [part, Y, bB], [N, M, N, 0, n], [Math.ceil(N / 256), M]);
    } else {
      st.dispatch(skinnyKernel(kc, M, sg, true, true, false, shape), [bW, bX, Y, bB], [K, N, M, N, 0], [1, Math.ceil(N / skinnyCols(shape))]);
    }
    st.submit();
    expect(maxAbsDiff(await readF32(Y, M * N), ref.matmul(x, w, M, N, K, bias, res))).toBeLessThan(2e-3);
  });
}
