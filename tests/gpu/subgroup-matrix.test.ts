// The subgroup-matrix operations the tensor-core kernels build on, one at a time, on a
// single 16 x 16 x 16 product: loads from workgroup memory at a row stride other than
// 16, row- and column-major, a left matrix held across a barrier that overwrites its
// source, and stores at a stride other than 16, into workgroup and storage memory.
// A kernel that fails here shows which primitive a wrong tensor-core kernel relies on.
// Needs f16 subgroup matrices (dawn.node on NVIDIA); skipped, loudly, elsewhere.
import { expect, test } from "bun:test";
import { KernelContext, registerKernelSource } from "../../src/gpu/kernels.ts";
import { getGpu, rand, readF32, up } from "../fixtures/gpu-helpers.ts";
import * as ref from "../fixtures/reference.ts";

const gpu = await getGpu();
const sm = gpu.features.subgroupMatrix;
const usable = !!sm && sm.M === 16 && sm.N === 16 && sm.K === 16 && gpu.features.f16;

registerKernelSource("test_subgroup_matrix", `
struct Params { n: u32, }
@group(0) @binding(#) var<storage, read> A: array<f32>;   // [16 m][16 k]
@group(0) @binding(#) var<storage, read> B: array<f32>;   // [16 k][16 n]
@group(0) @binding(#) var<storage, read_write> C: array<f32>;
@group(0) @binding(#) var<uniform> P: Params;
const AS = {{AS}}u;
const BS = {{BS}}u;
const CS = {{CS}}u;
const COFF = {{COFF}}u;
const CN = 16u * CS + 64u;
var<workgroup> a: array<f16, 16u * AS>;
var<workgroup> b: array<f16, 16u * BS>;
var<workgroup> c: array<f32, CN>;
#if SCALAR
var<workgroup> flag: u32;   // a 4-byte variable beside the f16 arrays, as attention's key count was
#endif

@compute @workgroup_size({{WG}})
fn main(@builtin(local_invocation_index) t: u32) {
  for (var i = t; i < 256u; i += {{WG}}u) {
    let r = i / 16u;
    let q = i % 16u;
    a[r * AS + q] = f16(A[i]);
#if BCOL
    b[q * BS + r] = f16(B[i]);   // element (k = r, n = q) at column q
#else
    b[r * BS + q] = f16(B[i]);
#endif
  }
  for (var i = t; i < CN; i += {{WG}}u) { c[i] = -7.0; }
  if (t == 0u && P.n == 12345u) { C[0] = 0.0; }   // keeps the params binding (the host binds one)
  workgroupBarrier();
#if SCALAR
  if (t == 0u) { flag = P.n + 1u; }
  if (workgroupUniformLoad(&flag) == 0u) { return; }
#endif
  let l = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>>(&a, 0u, false, AS);
#if HOLD
  workgroupBarrier();
  for (var i = t; i < 16u * AS; i += {{WG}}u) { a[i] = f16(0.0); }
  workgroupBarrier();
#endif
  let r = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>(&b, 0u, {{BCOL_FLAG}}, BS);
#if ZCTOR
  var acc = subgroup_matrix_result<f32, 16, 16>();
  acc = subgroupMatrixMultiplyAccumulate(l, r, acc);
#endif
#if LOOPZ
  // a result declared inside a loop starts at zero on every iteration (WGSL): the last
  // iteration's product, not the sum of three
  var acc = subgroupMatrixMultiply<f32>(l, r);
  for (var it = 0u; it < 3u + P.n; it++) {
    var z: subgroup_matrix_result<f32, 16, 16>;
    z = subgroupMatrixMultiplyAccumulate(l, r, z);
    acc = z;
  }
#endif
#if MUL
  let acc = subgroupMatrixMultiply<f32>(l, r);
#endif
#if PLAIN
  var acc: subgroup_matrix_result<f32, 16, 16>;
  acc = subgroupMatrixMultiplyAccumulate(l, r, acc);
#endif
#if STORAGE
  subgroupMatrixStore(&C, COFF, acc, false, CS);
#else
  subgroupMatrixStore(&c, COFF, acc, false, CS);
  workgroupBarrier();
  for (var i = t; i < CN; i += {{WG}}u) { C[i] = c[i]; }
#endif
}
`);

test.skipIf(usable)(`subgroup-matrix primitives SKIPPED: ${gpu.adapterName} has no f16 16x16x16 subgroup matrices`, () => {});

const cases: { name: string; AS: number; BS: number; CS: number; COFF: number; BCOL: boolean; HOLD: boolean; STORAGE: boolean; ZCTOR?: boolean; SCALAR?: boolean; LOOPZ?: boolean; MUL?: boolean; defect?: string }[] = [
  { name: "strides 16, store to workgroup (the GEMM's epilogue)", AS: 16, BS: 16, CS: 16, COFF: 0, BCOL: false, HOLD: false, STORAGE: false },
  { name: "load strides 40, right column-major (the GEMM's tiles)", AS: 40, BS: 40, CS: 16, COFF: 0, BCOL: true, HOLD: false, STORAGE: false },
  { name: "left stride 72, right row-major stride 136 (P V)", AS: 72, BS: 136, CS: 16, COFF: 0, BCOL: false, HOLD: false, STORAGE: false },
  { name: "store to workgroup at stride 68 and offset 16 (attention scores)", AS: 16, BS: 16, CS: 68, COFF: 16, BCOL: false, HOLD: false, STORAGE: false },
  { name: "store to workgroup at stride 68 and offset 48", AS: 16, BS: 16, CS: 68, COFF: 48, BCOL: true, HOLD: false, STORAGE: false },
  { name: "store to storage at stride 40 and offset 8", AS: 16, BS: 16, CS: 40, COFF: 8, BCOL: false, HOLD: false, STORAGE: true },
  { name: "left matrix held across a barrier that overwrites its source (attention queries)", AS: 40, BS: 40, CS: 16, COFF: 0, BCOL: true, HOLD: true, STORAGE: false },
  { name: "accumulator from the zero-value constructor subgroup_matrix_result<f32, 16, 16>()", AS: 16, BS: 16, CS: 16, COFF: 0, BCOL: false, HOLD: false, STORAGE: false, ZCTOR: true },
  { name: "subgroupMatrixMultiply (no accumulator)", AS: 16, BS: 16, CS: 16, COFF: 0, BCOL: false, HOLD: false, STORAGE: false, MUL: true },
  // Two forms wrong on the H100 (dawn.node 0.6.2, driver 580; bench/results/2026-12-08-NVIDIA-H100-dbe6385-tensor-core-attention.md):
  // the kernels avoid both, and these cases are expected to fail where the defect is (test.failing), so a
  // runtime that fixes one shows up as a failure here
  { name: "accumulator declared inside a loop, zero on every iteration", AS: 16, BS: 16, CS: 16, COFF: 0, BCOL: false, HOLD: false, STORAGE: false, LOOPZ: true, defect: "not zeroed again" },
  { name: "a u32 workgroup variable declared beside the f16 arrays (alignment of the matrices' memory)", AS: 72, BS: 72, CS: 16, COFF: 0, BCOL: true, HOLD: false, STORAGE: false, SCALAR: true, defect: "misaligned matrix memory" },
];

// both were seen on NVIDIA (Dawn's Vulkan backend, driver 580: whether Dawn or the driver, unknown); elsewhere those cases must pass
const nvidia = /nvidia/i.test(gpu.adapterName);
for (const c of usable ? cases : []) {
  const run = c.defect && nvidia ? test.failing : test;
  run(`subgroup matrix: ${c.name}${c.defect && nvidia ? ` (known defect on this GPU: ${c.defect})` : ""}`, async () => {
    const kc = new KernelContext(gpu);
    const src = kc.kernel("test_subgroup_matrix", { ...c, ZCTOR: !!c.ZCTOR, SCALAR: !!c.SCALAR, LOOPZ: !!c.LOOPZ, MUL: !!c.MUL, PLAIN: !c.ZCTOR && !c.LOOPZ && !c.MUL, BCOL_FLAG: c.BCOL ? "true" : "false", WG: gpu.features.subgroupMaxSize });
    const A = rand(256, 21).map(ref.roundF16), B = rand(256, 22).map(ref.roundF16);
    const n = 16 * c.CS + 64;
    const out = await up(new Float32Array(n).fill(-7));
    const st = kc.step();
    st.dispatch(src, [await up(A), await up(B), out], [0], [1, 1, 1]);
    st.submit();
    const got = await readF32(out, n);
    const want = new Float32Array(n).fill(-7);
    for (let i = 0; i < 16; i++) {
      for (let j = 0; j < 16; j++) {
        let s = 0;
        for (let k = 0; k < 16; k++) s += A[i * 16 + k] * B[k * 16 + j];
        want[c.COFF + i * c.CS + j] = s;
      }
    }
    let worst = 0, at = -1;
    for (let i = 0; i < n; i++) {
      const d = Math.abs(got[i] - want[i]);
      if (!(d <= worst)) { worst = d; at = i; }
    }
    expect(worst, `worst at ${at}: got ${got[at]}, want ${want[at]}`).toBeLessThan(1e-3);
  });
}
