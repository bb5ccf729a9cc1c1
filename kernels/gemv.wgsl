// Decode GEMV: Y[m, colOff + n] (+)= sum_k X[m, k] * W[n, k] (+ B[colOff + n]).
// W: f16 [N, K] (native f16 or packed u32 pairs), X: f32 [M, K], K % 8 == 0.
// One workgroup: ROWS weight rows x BATCH activation rows; each thread strides K in
// 16-byte weight loads, so W is read once per BATCH activation rows. f32 accumulators.
//
// Fusions (decode only; prefill keeps the separate kernels):
// NORM: RMSNorm of X folded in: Y = inv_rms(X[m]) * sum_k W[n, k] G[k] X[m, k]. Every
//   workgroup reads whole rows of X anyway, so it sums X^2 in the same K loop (K is
//   the hidden size: the norm's mean runs over K).
// GATHER (with NORM): activation row m is X[R[m]] (the last row of each sequence).
// SWIGLU (with NORM): a workgroup takes ROWS/2 gate rows W[gRow + n] and the matching
//   up rows W2[uRow + n] and writes silu(gate) * up; columns n >= nW (the padding of
//   the down projection's K) get 0.
struct Params { K: u32, N: u32, M: u32, ldy: u32, colOff: u32, eps: f32, nW: u32, gRow: u32, uRow: u32, }

#if F16
@group(0) @binding(#) var<storage, read> W: array<vec4<f16>>;
#else
@group(0) @binding(#) var<storage, read> W: array<vec4<u32>>;
#endif
@group(0) @binding(#) var<storage, read> X: array<vec4<f32>>;
@group(0) @binding(#) var<storage, read_write> Y: array<f32>;
#if BIAS
@group(0) @binding(#) var<storage, read> B: array<f32>;
#endif
#if NORM
@group(0) @binding(#) var<storage, read> G: array<vec4<f32>>;
#endif
#if GATHER
@group(0) @binding(#) var<storage, read> R: array<u32>;
#endif
#if SWIGLU
#if F16
@group(0) @binding(#) var<storage, read> W2: array<vec4<f16>>;
#else
@group(0) @binding(#) var<storage, read> W2: array<vec4<u32>>;
#endif
#endif
@group(0) @binding(#) var<uniform> P: Params;

const WG = {{WG}}u;
const ROWS = {{ROWS}}u;
const BATCH = {{BATCH}}u;
const RB = ROWS * BATCH;
#if SWIGLU
const OUT = ROWS / 2u; // output columns per workgroup
#else
const OUT = ROWS;
#endif
#if NORM
const NR = RB + BATCH; // the sums of squares ride along with the dot products
#else
const NR = RB;
#endif

#if SUBGROUPS
// one partial per (value, subgroup); subgroups are at least 4 wide
const SLOTS = WG / 4u;
#else
// tree over WG / 2 slots: the upper half adds into the lower half first
const SLOTS = WG / 2u;
#endif
var<workgroup> red: array<f32, NR * SLOTS>;

// 8 consecutive weights starting at element 8*i
#if F16
fn load8(i: u32) -> array<vec4<f32>, 2> {
  return array<vec4<f32>, 2>(vec4<f32>(W[2u * i]), vec4<f32>(W[2u * i + 1u]));
}
#if SWIGLU
fn load8up(i: u32) -> array<vec4<f32>, 2> {
  return array<vec4<f32>, 2>(vec4<f32>(W2[2u * i]), vec4<f32>(W2[2u * i + 1u]));
}
#endif
#else
fn unpack8(u: vec4<u32>) -> array<vec4<f32>, 2> {
  return array<vec4<f32>, 2>(
    vec4<f32>(unpack2x16float(u.x), unpack2x16float(u.y)),
    vec4<f32>(unpack2x16float(u.z), unpack2x16float(u.w)));
}
fn load8(i: u32) -> array<vec4<f32>, 2> { return unpack8(W[i]); }
#if SWIGLU
fn load8up(i: u32) -> array<vec4<f32>, 2> { return unpack8(W2[i]); }
#endif
#endif

// index of the last weight row a workgroup may read (rows past it are clamped there)
fn lastRow() -> u32 {
#if SWIGLU
  return P.nW - 1u;
#else
  return P.N - 1u;
#endif
}

// activation row b of the workgroup's BATCH rows: 8 consecutive X values from 8*k8
fn xRow(b: u32, m0: u32, k8: u32) -> array<vec4<f32>, 2> {
  let mb = min(m0 + b, P.M - 1u);
#if GATHER
  let m = R[mb];
#else
  let m = mb;
#endif
  let xi = m * (P.K / 4u) + 2u * k8;
  return array<vec4<f32>, 2>(X[xi], X[xi + 1u]);
}

// one thread's partial v of value j into the reduction slots: a subgroup sum, or
// (without subgroups) phase 0 stores the upper half's, phase 1 adds the lower half's
fn stash(j: u32, v: f32, phase: u32, t: u32, sgs: u32, sgi: u32) {
#if SUBGROUPS
  let s = subgroupAdd(v);
  if (sgi == 0u) { red[j * SLOTS + t / sgs] = s; }
#else
  if (phase == 0u && t >= SLOTS) { red[j * SLOTS + t - SLOTS] = v; }
  if (phase == 1u && t < SLOTS) { red[j * SLOTS + t] += v; }
#endif
}

// Every loop over rows (r), batch rows (b) or values is unrolled, so acc and the x
// rows index only by constants and stay in registers.
@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32
#if SUBGROUPS
  , @builtin(subgroup_size) sgs: u32, @builtin(subgroup_invocation_id) sgi: u32
#endif
) {
#if !SUBGROUPS
  let sgs = 1u;
  let sgi = 0u;
#endif
  let n0 = wid.x * OUT;
  let m0 = wid.y * BATCH;
  let K8 = P.K / 8u;
  var acc: array<f32, NR>;
  for (var k8 = t; k8 < K8; k8 += WG) {
#if NORM
    let g0 = G[2u * k8];
    let g1 = G[2u * k8 + 1u];
#endif
#unroll b BATCH
    var x{{b}} = xRow({{b}}u, m0, k8);
#if NORM
    acc[RB + {{b}}u] += dot(x{{b}}[0], x{{b}}[0]) + dot(x{{b}}[1], x{{b}}[1]);
    x{{b}}[0] *= g0;
    x{{b}}[1] *= g1;
#endif
#endunroll
#if SWIGLU
#unroll r ROWS/2
    {
      let w = load8((P.gRow + min(n0 + {{r}}u, lastRow())) * K8 + k8);
      let u = load8up((P.uRow + min(n0 + {{r}}u, lastRow())) * K8 + k8);
#unroll b BATCH
      acc[{{r}}u * BATCH + {{b}}u] += dot(w[0], x{{b}}[0]) + dot(w[1], x{{b}}[1]);
      acc[(OUT + {{r}}u) * BATCH + {{b}}u] += dot(u[0], x{{b}}[0]) + dot(u[1], x{{b}}[1]);
#endunroll
    }
#endunroll
#else
#unroll r ROWS
    {
      let w = load8(min(n0 + {{r}}u, lastRow()) * K8 + k8);
#unroll b BATCH
      acc[{{r}}u * BATCH + {{b}}u] += dot(w[0], x{{b}}[0]) + dot(w[1], x{{b}}[1]);
#endunroll
    }
#endunroll
#endif
  }
#if SUBGROUPS
  let nsg = WG / sgs;
  let phases = 1u;
#else
  let nsg = 1u;
  let phases = 2u;
#endif
  for (var ph = 0u; ph < phases; ph++) {
#unroll j ROWS*BATCH
    stash({{j}}u, acc[{{j}}u], ph, t, sgs, sgi);
#endunroll
#if NORM
#unroll b BATCH
    stash(RB + {{b}}u, acc[RB + {{b}}u], ph, t, sgs, sgi);
#endunroll
#endif
    workgroupBarrier();
  }
#if !SUBGROUPS
  for (var s = SLOTS / 2u; s > 0u; s >>= 1u) {
    if (t < s) {
      for (var j = 0u; j < NR; j++) { red[j * SLOTS + t] += red[j * SLOTS + t + s]; }
    }
    workgroupBarrier();
  }
#endif
  // value j of the workgroup: the sum of its nsg partials
  if (t < OUT * BATCH) {
    var inv = 1.0;
#if NORM
    inv = inverseSqrt(total(RB + t % BATCH, nsg) / f32(P.K) + P.eps);
#endif
#if SWIGLU
    let g = total(t, nsg) * inv;
    let u = total(OUT * BATCH + t, nsg) * inv;
    store(t, n0, m0, g / (1.0 + exp(-g)) * u);
#else
    store(t, n0, m0, total(t, nsg) * inv);
#endif
  }
}

fn total(j: u32, nsg: u32) -> f32 {
  var s = 0.0;
  for (var i = 0u; i < nsg; i++) { s += red[j * SLOTS + i]; }
  return s;
}

#include matmul_out

fn store(j: u32, n0: u32, m0: u32, v: f32) {
  let n = n0 + j / BATCH;
  let m = m0 + j % BATCH;
  if (n >= P.N || m >= P.M) { return; }
  var out = v;
#if SWIGLU
  if (n >= P.nW) { out = 0.0; }
#endif
  storeOut(m * P.ldy + P.colOff + n, n, out);
}
