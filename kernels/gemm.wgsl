// Prefill GEMM: Y[m, colOff + n] (+)= sum_k X[m, k] * W[n, k] (+ B[colOff + n]).
// W: f16 [N, K] (native f16 or packed u32 pairs) or, with QUANT, block-quantized rows
// dequantized on their way into workgroup memory (kernels/quant.wgsl), X: f32 [M, K],
// K % 8 == 0.
// f32 accumulators. Two designs (src/model/gemm.ts names the variants): !TILED, the
// first one, and TILED, register tiles of 4 or 8 per side with vec4 workgroup reads
// (DB: with double-buffered workgroup tiles).
struct Params { K: u32, N: u32, M: u32, ldy: u32, colOff: u32, }

#if QUANT
@group(0) @binding(0) var<storage, read> W: array<u32>;
#else
#if F16
@group(0) @binding(0) var<storage, read> W: array<vec4<f16>>;
#else
@group(0) @binding(0) var<storage, read> W: array<vec2<u32>>;
#endif
#endif
@group(0) @binding(1) var<storage, read> X: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
#if BIAS
@group(0) @binding(3) var<storage, read> B: array<f32>;
@group(0) @binding(4) var<uniform> P: Params;
#else
@group(0) @binding(3) var<uniform> P: Params;
#endif

// weights k .. k + 3 of row n (k % 4 == 0)
#if QUANT
fn qw(b: u32, i: u32) -> u32 { return W[i]; }
#include quant
fn load4w(n: u32, k: u32) -> vec4<f32> { return qload8(0u, n, k / 8u, P.K)[(k / 4u) % 2u]; }
#else
fn load4w(n: u32, k: u32) -> vec4<f32> {
  let i = (n * P.K + k) / 4u;
#if F16
  return vec4<f32>(W[i]);
#else
  let u = W[i];
  return vec4<f32>(unpack2x16float(u.x), unpack2x16float(u.y));
#endif
}
#endif

#include matmul_out

/** One output: Y[m, colOff + n] (+)= v (+ B[colOff + n]). */
fn store(m: u32, n: u32, v: f32) {
  storeOut(m * P.ldy + P.colOff + n, n, v);
}

#if !TILED
// 64x64 output tile per workgroup, 16x16 threads each owning a 4x4 register tile,
// K in steps of 16 staged through workgroup memory.
const BM = 64u;
const BN = 64u;
const BK = 16u;

var<workgroup> As: array<f32, BK * BM>; // [k][m]
var<workgroup> Bs: array<f32, BK * BN>; // [k][n]

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let n0 = wid.x * BN;
  let m0 = wid.y * BM;
  let tx = t % 16u;
  let ty = t / 16u;
  // loader coordinates: 64 rows x 4 groups of 4 k-values
  let lr = t / 4u;
  let lk = (t % 4u) * 4u;
  var acc: array<array<f32, 4>, 4>;
  for (var k0 = 0u; k0 < P.K; k0 += BK) {
    let k = k0 + lk;
    var a = vec4<f32>(0.0);
    var w = vec4<f32>(0.0);
    if (k < P.K) {
      if (m0 + lr < P.M) { a = X[((m0 + lr) * P.K + k) / 4u]; }
      if (n0 + lr < P.N) { w = load4w(n0 + lr, k); }
    }
    for (var i = 0u; i < 4u; i++) {
      As[(lk + i) * BM + lr] = a[i];
      Bs[(lk + i) * BN + lr] = w[i];
    }
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk++) {
      var av: array<f32, 4>;
      var bv: array<f32, 4>;
      for (var i = 0u; i < 4u; i++) {
        av[i] = As[kk * BM + ty + 16u * i];
        bv[i] = Bs[kk * BN + tx + 16u * i];
      }
      for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) { acc[i][j] = fma(av[i], bv[j], acc[i][j]); }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let m = m0 + ty + 16u * i;
    if (m >= P.M) { continue; }
    for (var j = 0u; j < 4u; j++) {
      let n = n0 + tx + 16u * j;
      if (n >= P.N) { continue; }
      store(m, n, acc[i][j]);
    }
  }
}
#else
// Register-tiled: 256 threads (16 x 16), each owning a TM x TN register tile (TM, TN in
// {4, 8}: TM8, TN8), so a workgroup covers BM = 16 TM rows of X by BN = 16 TN rows of W.
// Both tiles sit in workgroup memory k-major ([k][m], [k][n]; PAD floats after each
// k-row spread the transposing stores over banks), so per k a thread reads TM/4 + TN/4
// vec4s for TM * TN FMAs. The next tile's global loads are issued before the current
// tile's FMAs (register prefetch); W is unpacked to f32 once, on its way in. A thread's
// rows are 4ty..4ty+3 (+ 64), its columns 4tx..4tx+3 (+ 64): a warp's B reads are
// contiguous and its A reads broadcast. Grid: x = M tiles, so the few M tiles of a
// prefill chunk that share a W tile run side by side and W streams from DRAM once.
#if TM8
const BM = 128u;
#else
const BM = 64u;
#endif
#if TN8
const BN = 128u;
#else
const BN = 64u;
#endif
const BK = 16u;
const SA = (BM + {{PAD}}u) / 4u; // k-row strides, in vec4s
const SB = (BN + {{PAD}}u) / 4u;
// DB: two tiles of each in workgroup memory; the next k-step's tile is stored into the
// other while this one is read, so a k-step needs one barrier instead of two
#if DB
const NBUF = 2u;
#else
const NBUF = 1u;
#endif

var<workgroup> As: array<vec4<f32>, NBUF * BK * SA>;
var<workgroup> Bs: array<vec4<f32>, NBUF * BK * SB>;

// Loader slot e (0..rows*4): 16 rows x 2 k-groups of 4 per 32 lanes, so a warp's
// transposing stores hit 32 distinct banks (PAD 4) and its global reads 32-byte runs.
fn slotRow(e: u32) -> u32 { return (e >> 6u) * 16u + ((e & 31u) >> 1u); }
fn slotGroup(e: u32) -> u32 { return (e & 1u) + 2u * ((e >> 5u) & 1u); }

fn loadA(m0: u32, k0: u32, e: u32) -> vec4<f32> {
  let m = m0 + slotRow(e);
  let k = k0 + 4u * slotGroup(e);
  if (m < P.M && k < P.K) { return X[(m * P.K + k) / 4u]; }
  return vec4<f32>(0.0);
}

fn loadB(n0: u32, k0: u32, e: u32) -> vec4<f32> {
  let n = n0 + slotRow(e);
  let k = k0 + 4u * slotGroup(e);
  if (n < P.N && k < P.K) { return load4w(n, k); }
  return vec4<f32>(0.0);
}

fn storeA(e: u32, v: vec4<f32>, buf: u32) {
  let r = slotRow(e);
  let base = buf * BK * SA + 4u * slotGroup(e) * SA + r / 4u;
  for (var i = 0u; i < 4u; i++) { As[base + i * SA][r % 4u] = v[i]; }
}

fn storeB(e: u32, v: vec4<f32>, buf: u32) {
  let r = slotRow(e);
  let base = buf * BK * SB + 4u * slotGroup(e) * SB + r / 4u;
  for (var i = 0u; i < 4u; i++) { Bs[base + i * SB][r % 4u] = v[i]; }
}

// the prefetched tiles into buffer `buf`
fn storeTiles(t: u32, buf: u32, ga0: vec4<f32>, ga1: vec4<f32>, gb0: vec4<f32>, gb1: vec4<f32>) {
  storeA(t, ga0, buf);
  storeB(t, gb0, buf);
#if TM8
  storeA(t + 256u, ga1, buf);
#endif
#if TN8
  storeB(t + 256u, gb1, buf);
#endif
}

fn put(m: u32, n: u32, v: vec4<f32>) {
  if (m >= P.M) { return; }
  for (var j = 0u; j < 4u; j++) {
    if (n + j >= P.N) { return; }
    store(m, n + j, v[j]);
  }
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let m0 = wid.x * BM;
  let n0 = wid.y * BN;
  let tx = t % 16u;
  let ty = t / 16u;
  // c{i}: row i, columns 4tx..; d{i}: row i, columns 64 + 4tx..; rows 4..7 are 64 + 4ty..
  var c0 = vec4<f32>(0.0); var c1 = c0; var c2 = c0; var c3 = c0;
  var c4 = c0; var c5 = c0; var c6 = c0; var c7 = c0;
  var d0 = c0; var d1 = c0; var d2 = c0; var d3 = c0;
  var d4 = c0; var d5 = c0; var d6 = c0; var d7 = c0;
  // 64 rows x 4 k-groups per 256 slots: BM / 64 (BN / 64) loads per thread per tile
  var ga0 = loadA(m0, 0u, t);
  var gb0 = loadB(n0, 0u, t);
  var ga1 = vec4<f32>(0.0);
  var gb1 = vec4<f32>(0.0);
#if TM8
  ga1 = loadA(m0, 0u, t + 256u);
#endif
#if TN8
  gb1 = loadB(n0, 0u, t + 256u);
#endif
  var cur = 0u; // the buffer this k-step reads
#if DB
  storeTiles(t, 0u, ga0, ga1, gb0, gb1);
  workgroupBarrier();
#endif
  for (var k0 = 0u; k0 < P.K; k0 += BK) {
#if !DB
    storeTiles(t, 0u, ga0, ga1, gb0, gb1);
    workgroupBarrier();
#endif
    let kn = k0 + BK;
    ga0 = loadA(m0, kn, t);
    gb0 = loadB(n0, kn, t);
#if TM8
    ga1 = loadA(m0, kn, t + 256u);
#endif
#if TN8
    gb1 = loadB(n0, kn, t + 256u);
#endif
    let oa = cur * BK * SA;
    let ob = cur * BK * SB;
    for (var kk = 0u; kk < BK; kk++) {
      let a0 = As[oa + kk * SA + ty];
      let b0 = Bs[ob + kk * SB + tx];
      c0 = fma(vec4<f32>(a0.x), b0, c0);
      c1 = fma(vec4<f32>(a0.y), b0, c1);
      c2 = fma(vec4<f32>(a0.z), b0, c2);
      c3 = fma(vec4<f32>(a0.w), b0, c3);
#if TN8
      let b1 = Bs[ob + kk * SB + 16u + tx];
      d0 = fma(vec4<f32>(a0.x), b1, d0);
      d1 = fma(vec4<f32>(a0.y), b1, d1);
      d2 = fma(vec4<f32>(a0.z), b1, d2);
      d3 = fma(vec4<f32>(a0.w), b1, d3);
#endif
#if TM8
      let a1 = As[oa + kk * SA + 16u + ty];
      c4 = fma(vec4<f32>(a1.x), b0, c4);
      c5 = fma(vec4<f32>(a1.y), b0, c5);
      c6 = fma(vec4<f32>(a1.z), b0, c6);
      c7 = fma(vec4<f32>(a1.w), b0, c7);
#if TN8
      d4 = fma(vec4<f32>(a1.x), b1, d4);
      d5 = fma(vec4<f32>(a1.y), b1, d5);
      d6 = fma(vec4<f32>(a1.z), b1, d6);
      d7 = fma(vec4<f32>(a1.w), b1, d7);
#endif
#endif
    }
#if DB
    // the other buffer was last read before the previous barrier
    if (kn < P.K) { storeTiles(t, cur ^ 1u, ga0, ga1, gb0, gb1); }
    cur ^= 1u;
#endif
    workgroupBarrier();
  }
  let m = m0 + 4u * ty;
  let n = n0 + 4u * tx;
  put(m, n, c0); put(m + 1u, n, c1); put(m + 2u, n, c2); put(m + 3u, n, c3);
#if TN8
  put(m, n + 64u, d0); put(m + 1u, n + 64u, d1); put(m + 2u, n + 64u, d2); put(m + 3u, n + 64u, d3);
#endif
#if TM8
  put(m + 64u, n, c4); put(m + 65u, n, c5); put(m + 66u, n, c6); put(m + 67u, n, c7);
#if TN8
  put(m + 64u, n + 64u, d4); put(m + 65u, n + 64u, d5); put(m + 66u, n + 64u, d6); put(m + 67u, n + 64u, d7);
#endif
#endif
}
#endif
