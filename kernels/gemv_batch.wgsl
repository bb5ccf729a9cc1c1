// Decode GEMV, 1..MT activation rows: Y[m, colOff + n] (+)= sum_k X[m, k] W[n, k] (+ B).
// W: f16 [N, K] (native f16 or packed u32 pairs), X: f32 [M, K], K % 8 == 0.
// A workgroup owns TILE = 64 weight rows and reads each of them once for all M rows
// (gemv.wgsl at BATCH 4 read W M/4 times). 256 threads = 8 k-lanes x RG row groups x
// MG groups of MB = 4 activation rows; a thread keeps R x MB accumulators (R * RG = 64).
// Every 16-byte weight load feeds 4 rows x 8 FMAs and every x load R x 8 (R = 8 at
// MT = 16): at M = 16 the kernel does 16 FMAs per weight, near the f32 FMA peak at
// HBM speed, so load and issue slots are what it saves. X comes through L1/L2: 64
// rows per workgroup keep its traffic at MT * 4 / 128 of the weights'.
// Split-K (SPLIT): workgroup (x, y) takes K8 range [y * kLen8, (y + 1) * kLen8) and writes
// raw partial sums (and NORM's partial sums of squares) to Pt; gemv_reduce.wgsl sums the
// splits and applies the epilogue. Matrices with N = hidden have too few 64-row tiles to
// keep enough loads in flight otherwise.
// Batch invariance: the split plan depends on N and K only, and every (n, m) sums its
// k-lane steps, the 8-lane butterfly and the splits in the same order for any M and MT,
// so a sequence decodes to the same bits alone or in a batch.
//
// Fusions as in gemv.wgsl: NORM folds RMSNorm in (sum of squares in the K loop, the gain
// multiplied into the weights), GATHER reads activation row Rows[m], SWIGLU pairs gate rows
// W[gRow + n] (tile rows 0..31) with up rows W2[uRow + n] (32..63) and writes
// silu(gate) * up, 0 for the padding columns n >= nW. BIAS, RESIDUAL, colOff as gemv.wgsl.
struct Params { K: u32, N: u32, M: u32, ldy: u32, colOff: u32, eps: f32, nW: u32, gRow: u32, uRow: u32, kLen8: u32, }

#if F16
@group(0) @binding(#) var<storage, read> W: array<vec4<f16>>;
#else
@group(0) @binding(#) var<storage, read> W: array<vec4<u32>>;
#endif
@group(0) @binding(#) var<storage, read> X: array<vec4<f32>>;
#if SPLIT
// [KS][M][N] partial sums, then [KS][M] partial sums of squares (NORM)
@group(0) @binding(#) var<storage, read_write> Pt: array<f32>;
#else
@group(0) @binding(#) var<storage, read_write> Y: array<f32>;
#endif
#if BIAS
// (not with SPLIT: gemv_reduce.wgsl adds the bias)
@group(0) @binding(#) var<storage, read> B: array<f32>;
#endif
#if NORM
@group(0) @binding(#) var<storage, read> G: array<vec4<f32>>;
#endif
#if GATHER
@group(0) @binding(#) var<storage, read> Rows: array<u32>;
#endif
#if SWIGLU
#if F16
@group(0) @binding(#) var<storage, read> W2: array<vec4<f16>>;
#else
@group(0) @binding(#) var<storage, read> W2: array<vec4<u32>>;
#endif
#endif
@group(0) @binding(#) var<uniform> P: Params;

const WG = 256u;
const KL = 8u; // k-lanes per row: 8 x 16 bytes = one 128-byte line of a row per load
const MT = {{MT}}u; // activation rows of the tile (M <= MT)
const MB = 4u; // activation rows per thread
const MG = MT / MB;
const RG = WG / (KL * MG);
const R = {{R}}u; // weight rows per thread
const TILE = RG * R;
#if SWIGLU
const OUT = TILE / 2u;
#else
const OUT = TILE;
#endif
const NV = R * MB; // accumulators per thread

// x row offsets (vec4 units) of the tile's activation rows, clamped to M - 1
var<workgroup> xrow: array<u32, MT>;
// tile totals [TILE][MT], then the MT sums of squares
var<workgroup> tot: array<f32, TILE * MT + MT>;
// the k-lane partials of 2 accumulators of every thread, where subgroups cannot shuffle them
var<workgroup> red: array<f32, WG * 2u>;

fn unpackW(u: vec4<u32>) -> array<vec4<f32>, 2> {
  return array<vec4<f32>, 2>(
    vec4<f32>(unpack2x16float(u.x), unpack2x16float(u.y)),
    vec4<f32>(unpack2x16float(u.z), unpack2x16float(u.w)));
}
// 8 consecutive weights of W (up: W2) starting at element 8 * i
fn load8(i: u32, up: bool) -> array<vec4<f32>, 2> {
#if SWIGLU
  if (up) {
#if F16
    return array<vec4<f32>, 2>(vec4<f32>(W2[2u * i]), vec4<f32>(W2[2u * i + 1u]));
#else
    return unpackW(W2[i]);
#endif
  }
#endif
#if F16
  return array<vec4<f32>, 2>(vec4<f32>(W[2u * i]), vec4<f32>(W[2u * i + 1u]));
#else
  return unpackW(W[i]);
#endif
}

// acc + dot of 8 pairs as a chain of FMAs (dot() + add would spend a multiply and an add more)
fn fma8(acc: f32, w: array<vec4<f32>, 2>, x: array<vec4<f32>, 2>) -> f32 {
  var a = fma(w[0].x, x[0].x, acc);
  a = fma(w[0].y, x[0].y, a);
  a = fma(w[0].z, x[0].z, a);
  a = fma(w[0].w, x[0].w, a);
  a = fma(w[1].x, x[1].x, a);
  a = fma(w[1].y, x[1].y, a);
  a = fma(w[1].z, x[1].z, a);
  return fma(w[1].w, x[1].w, a);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32
#if SUBGROUPS
  , @builtin(subgroup_size) sgs: u32
#endif
) {
  // lanes: 8 k-lanes x 4 row groups per 32; the rest of t picks the row group and m group
  let kl = t % KL;
  let w32 = t / 32u;
  let rg = (t / KL) % 4u + 4u * (w32 % (RG / 4u));
  let mg = w32 / (RG / 4u);
  let K8 = P.K / 8u;
  let nsplit = nwg.y;
  if (t < MT) {
    let mm = min(t, P.M - 1u);
#if GATHER
    xrow[t] = Rows[mm] * (P.K / 4u);
#else
    xrow[t] = mm * (P.K / 4u);
#endif
  }
  workgroupBarrier();

  // weight row (element index / 8 of its start) of each of this thread's rows
  var wrow: array<u32, R>;
  var isUp = false;
#if SWIGLU
  let c0 = wid.x * OUT;
  isUp = rg >= RG / 2u; // warp-uniform: 4 row groups per 32 lanes, RG / 2 a multiple of 4
  for (var r = 0u; r < R; r++) {
    let j = (rg % (RG / 2u)) * R + r;
    let c = min(c0 + j, P.nW - 1u);
    wrow[r] = (select(P.gRow, P.uRow, isUp) + c) * K8;
  }
#else
  let n0 = wid.x * TILE;
  for (var r = 0u; r < R; r++) { wrow[r] = min(n0 + rg * R + r, P.N - 1u) * K8; }
#endif

  let k8a = wid.y * P.kLen8;
  let k8b = min(k8a + P.kLen8, K8);
  var acc: array<f32, NV>;
  var ss = 0.0; // sum of squares of x row mg * MB + rg % MB (NORM)
  // m groups past M skip the loop (warp-uniform; they still meet the barriers)
  if (mg * MB < P.M) {
    for (var k8 = k8a + kl; k8 < k8b; k8 += KL) {
      var xs: array<array<vec4<f32>, 2>, MB>;
      for (var b = 0u; b < MB; b++) {
        // rows past M stay 0 (warp-uniform branch; their FMAs are spare issue slots at small M)
        if (mg * MB + b < P.M) {
          let xi = xrow[mg * MB + b] + 2u * k8;
          xs[b] = array<vec4<f32>, 2>(X[xi], X[xi + 1u]);
        }
#if NORM
        // one row group in MB squares row b: R * 8 FMAs more per 4 * R * 8, not 4 * 8
        if (rg % MB == b) { ss = fma8(ss, xs[b], xs[b]); }
#endif
      }
#if NORM
      let g = array<vec4<f32>, 2>(G[2u * k8], G[2u * k8 + 1u]);
#endif
      for (var r = 0u; r < R; r++) {
        var w = load8(wrow[r] + k8, isUp);
#if NORM
        w[0] *= g[0];
        w[1] *= g[1];
#endif
        for (var b = 0u; b < MB; b++) { acc[r * MB + b] = fma8(acc[r * MB + b], w, xs[b]); }
      }
    }
  }

  // sum the 8 k-lanes of every accumulator (ss last); lane kl = 0 ends with the totals
#if SUBGROUPS
  // the k-lanes are 8 consecutive invocations of one subgroup where subgroups are >= 8 wide
  let shuffle = sgs >= KL;
#else
  let shuffle = false;
#endif
  for (var j = 0u; j <= NV; j += 2u) {
    var v0 = ss;
    var v1 = 0.0;
    if (j < NV) { v0 = acc[j]; v1 = acc[j + 1u]; }
    if (shuffle) {
#if SUBGROUPS
      for (var s = 1u; s < KL; s <<= 1u) {
        v0 += subgroupShuffleXor(v0, s);
        v1 += subgroupShuffleXor(v1, s);
      }
#endif
    } else {
      red[2u * t] = v0;
      red[2u * t + 1u] = v1;
      workgroupBarrier();
      if (kl == 0u) {
        for (var i = 1u; i < KL; i++) {
          v0 += red[2u * (t + i)];
          v1 += red[2u * (t + i) + 1u];
        }
      }
      workgroupBarrier();
    }
    if (kl == 0u) {
      if (j < NV) {
        // MB is even: j and j + 1 are one weight row, two activation rows
        let row = rg * R + j / MB;
        let m = mg * MB + j % MB;
        tot[row * MT + m] = v0;
        tot[row * MT + m + 1u] = v1;
      } else if (rg < MB) {
        tot[TILE * MT + mg * MB + rg] = v0;
      }
    }
  }
  workgroupBarrier();

  // outputs, column-fastest for coalesced stores
  for (var i = t; i < OUT * MT; i += WG) {
    let c = i % OUT;
    let m = i / OUT;
    if (m >= P.M) { break; }
    let n = wid.x * OUT + c;
    if (n >= P.N) { continue; }
#if SPLIT
    Pt[(wid.y * P.M + m) * P.N + n] = tot[c * MT + m];
#else
    var inv = 1.0;
#if NORM
    inv = inverseSqrt(tot[TILE * MT + m] / f32(P.K) + P.eps);
#endif
#if SWIGLU
    let gt = tot[c * MT + m] * inv;
    let u = tot[(OUT + c) * MT + m] * inv;
    store(n, m, gt / (1.0 + exp(-gt)) * u);
#else
    store(n, m, tot[c * MT + m] * inv);
#endif
#endif
  }
#if SPLIT
#if NORM
  if (wid.x == 0u && t < P.M) { Pt[nsplit * P.M * P.N + wid.y * P.M + t] = tot[TILE * MT + t]; }
#endif
#endif
}

#if !SPLIT
fn store(n: u32, m: u32, v: f32) {
  let yi = m * P.ldy + P.colOff + n;
  var out = v;
#if SWIGLU
  if (n >= P.nW) { out = 0.0; }
#endif
#if BIAS
  out += B[P.colOff + n];
#endif
#if RESIDUAL
  out += Y[yi];
#endif
  Y[yi] = out;
}
#endif
