// Decode GEMV: Y[m, colOff + n] (+)= sum_k X[m, k] * W[n, k] (+ B[colOff + n]).
// W: f16 [N, K] (native f16 or packed u32 pairs) or, with QUANT, block-quantized rows
// (kernels/quant.wgsl), X: f32 [M, K], K % 8 == 0.
// One workgroup: WG / LANES row groups, each ROWS weight rows x BATCH activation rows.
// The LANES threads of a group stride K in 16-byte weight loads and then sum their
// partials, in an order fixed by LANES alone: so a tile's BATCH, ROWS and KU never change an
// output's value (batch invariance). W is read once per BATCH activation rows, X once
// per ROWS rows. f32 accumulators.
//
// Fusions (decode only; prefill keeps the separate kernels):
// NORM: RMSNorm of X folded in: Y = inv_rms(X[m]) * sum_k W[n, k] G[k] X[m, k]. Every
//   workgroup reads whole rows of X anyway, so it sums X^2 in the same K loop (K is
//   the hidden size: the norm's mean runs over K).
// GATHER (with NORM): activation row m is X[R[m]] (the last row of each sequence).
// SWIGLU (with NORM): a workgroup takes ROWS/2 gate rows W[gRow + n] and the matching
//   up rows W2[uRow + n] and writes silu(gate) * up; columns n >= nW (the padding of
//   the down projection's K) get 0.
//
// PIECE (with QUANT): lanes stride K in pieces of QPW weights (kernels/quant_piece.wgsl:
// one to four 16-byte loads of packed weights each, runs of 16 weights sharing a scale
// and an offset) instead of 8 weights at a time; each x value meets its run's integer
// weights, and each run's scale once. XWG (with PIECE): the workgroup's BATCH activation
// rows are staged in workgroup memory first (XS vec4s), and lanes read x there; one
// vec4 of padding after every XPAD spreads the pieces a quarter-warp reads at once over
// all banks (each format's XPAD: src/model/quant-gemv.ts QUANT_PIECES).
// QPF: each trip's pieces are loaded a trip ahead (the first before x is staged).
// XQ8 (with XWG): x staged as 8-bit integers instead, each run of 16 with its scale d
// and d * (the sum of its integers), so that a run meets its packed weights in 4-way
// integer dot products (dot4I8Packed), llama.cpp's design; with NORM the staging
// threads also take the sums of squares (summed over all groups at the end).
struct Params { K: u32, N: u32, M: u32, ldy: u32, colOff: u32, eps: f32, nW: u32, gRow: u32, uRow: u32, }

#if QUANT
#if PIECE
@group(0) @binding(#) var<storage, read> W: array<vec4<u32>>;
#else
@group(0) @binding(#) var<storage, read> W: array<u32>;
#endif
#else
#if F16
@group(0) @binding(#) var<storage, read> W: array<vec4<f16>>;
#else
@group(0) @binding(#) var<storage, read> W: array<vec4<u32>>;
#endif
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
#if QUANT
#if PIECE
@group(0) @binding(#) var<storage, read> W2: array<vec4<u32>>;
#else
@group(0) @binding(#) var<storage, read> W2: array<u32>;
#endif
#else
#if F16
@group(0) @binding(#) var<storage, read> W2: array<vec4<f16>>;
#else
@group(0) @binding(#) var<storage, read> W2: array<vec4<u32>>;
#endif
#endif
#endif
@group(0) @binding(#) var<uniform> P: Params;

const WG = {{WG}}u;
const ROWS = {{ROWS}}u;
const BATCH = {{BATCH}}u;
const LANES = {{LANES}}u;
const KU = {{KU}}u; // chunks of K per loop trip
const NG = WG / LANES; // row groups per workgroup
const RB = ROWS * BATCH;
#if SWIGLU
const OUTG = ROWS / 2u; // output columns per group
#else
const OUTG = ROWS;
#endif
const OUT = NG * OUTG; // output columns per workgroup
#if NORM
const NR = RB + BATCH; // the sums of squares ride along with the dot products
#else
const NR = RB;
#endif

#if SUBGROUPS
// one partial per (value, block of min(subgroup size, LANES) lanes); blocks are >= 4 lanes
const SLOTS = WG / 4u;
#else
// a tree per group over LANES / 2 slots: the upper half adds into the lower half first
const SLOTS = WG / 2u;
#endif
var<workgroup> red: array<f32, NR * SLOTS>;
#if XWG
#if XQ8
var<workgroup> xq: array<vec4<u32>, {{XQS}}>; // run r of the BATCH rows (K / 16 a row): 16 i8, at xqAt(r)
var<workgroup> xqd: array<vec2<f32>, {{XQR}}>; // run r: d, d * sum of its integers
const XQPAD = {{XQPAD}}u;
// XQPAD padding vec4s after every 8 runs: the runs of a quarter-warp's pieces meet 8 bank groups
fn xqAt(r: u32) -> u32 {
  return r + XQPAD * (r / 8u);
}
#else
var<workgroup> xs: array<vec4<f32>, {{XS}}>; // BATCH rows of K / 4, padded
const XPAD = {{XPAD}}u;
// where vec4 i of the BATCH rows sits in xs (K / 4 is a multiple of XPAD: no piece's run straddles a pad)
fn xsAt(i: u32) -> u32 {
  return i + i / XPAD;
}
#endif
#endif

// weights 8 k8 .. 8 k8 + 7 of weight row `row` (load8up: of W2)
#if QUANT
#if PIECE
fn qv(b: u32, i: u32) -> vec4<u32> {
#if SWIGLU
  if (b == 1u) { return W2[i]; }
#endif
  return W[i];
}
const QPW = {{QPW}}u; // weights a piece
const QRUNS = {{QRUNS}}u; // runs of 16 weights a piece
const QRUN = {{QRUN}}u; // x distance between a piece's runs
const QX = 4u * QRUNS; // x vec4s of a piece
#include quant_piece
#else
fn qw(b: u32, i: u32) -> u32 {
#if SWIGLU
  if (b == 1u) { return W2[i]; }
#endif
  return W[i];
}
#include quant
fn load8(row: u32, k8: u32) -> array<vec4<f32>, 2> { return qload8(0u, row, k8, P.K); }
#if SWIGLU
fn load8up(row: u32, k8: u32) -> array<vec4<f32>, 2> { return qload8(1u, row, k8, P.K); }
#endif
#endif
#else
#if F16
fn load8(row: u32, k8: u32) -> array<vec4<f32>, 2> {
  let i = row * (P.K / 8u) + k8;
  return array<vec4<f32>, 2>(vec4<f32>(W[2u * i]), vec4<f32>(W[2u * i + 1u]));
}
#if SWIGLU
fn load8up(row: u32, k8: u32) -> array<vec4<f32>, 2> {
  let i = row * (P.K / 8u) + k8;
  return array<vec4<f32>, 2>(vec4<f32>(W2[2u * i]), vec4<f32>(W2[2u * i + 1u]));
}
#endif
#else
fn unpack8(u: vec4<u32>) -> array<vec4<f32>, 2> {
  return array<vec4<f32>, 2>(
    vec4<f32>(unpack2x16float(u.x), unpack2x16float(u.y)),
    vec4<f32>(unpack2x16float(u.z), unpack2x16float(u.w)));
}
fn load8(row: u32, k8: u32) -> array<vec4<f32>, 2> { return unpack8(W[row * (P.K / 8u) + k8]); }
#if SWIGLU
fn load8up(row: u32, k8: u32) -> array<vec4<f32>, 2> { return unpack8(W2[row * (P.K / 8u) + k8]); }
#endif
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

// the X row of activation row b of the workgroup's BATCH rows
fn xRowIndex(b: u32, m0: u32) -> u32 {
  let mb = min(m0 + b, P.M - 1u);
#if GATHER
  return R[mb];
#else
  return mb;
#endif
}

#if !PIECE
// activation row b of the workgroup's BATCH rows: 8 consecutive X values from 8*k8
fn xRow(b: u32, m0: u32, k8: u32) -> array<vec4<f32>, 2> {
  let xi = xRowIndex(b, m0) * (P.K / 4u) + 2u * k8;
  return array<vec4<f32>, 2>(X[xi], X[xi + 1u]);
}
#endif

#if PIECE
#if !XQ8
// a piece's x (QRUNS runs of 16 from xb) in activation row b, and (xPieceG) the norm's gains there
fn xPiece(b: u32, m0: u32, xb: u32) -> array<vec4<f32>, QX> {
  var x: array<vec4<f32>, QX>;
#if XWG
  let xi = xsAt((b * P.K + xb) / 4u);
#unroll j QRUNS
#unroll i 4
  x[{{j}}u * 4u + {{i}}u] = xs[xi + {{j}}u * (QRUN / 4u) + {{i}}u];
#endunroll
#endunroll
#else
  let xi = (xRowIndex(b, m0) * P.K + xb) / 4u;
#unroll j QRUNS
#unroll i 4
  x[{{j}}u * 4u + {{i}}u] = X[xi + {{j}}u * (QRUN / 4u) + {{i}}u];
#endunroll
#endunroll
#endif
  return x;
}
#if NORM
fn xPieceG(xb: u32) -> array<vec4<f32>, QX> {
  var g: array<vec4<f32>, QX>;
#unroll j QRUNS
#unroll i 4
  g[{{j}}u * 4u + {{i}}u] = G[xb / 4u + {{j}}u * (QRUN / 4u) + {{i}}u];
#endunroll
#endunroll
  return g;
}
#endif
// the sums of each run's x
fn runSums(x: array<vec4<f32>, QX>) -> vec4<f32> {
  var s = vec4<f32>(0.0);
#unroll j QRUNS
  s[{{j}}] = dot(x[{{j}}u * 4u] + x[{{j}}u * 4u + 1u] + x[{{j}}u * 4u + 2u] + x[{{j}}u * 4u + 3u], vec4<f32>(1.0));
#endunroll
  return s;
}
#endif
#if XQ8
struct XQPiece { q: array<vec4<u32>, QRUNS>, d: array<vec2<f32>, QRUNS>, }
// a piece's 8-bit x in activation row b: its runs' integers and scales
fn xPieceQ(b: u32, xb: u32) -> XQPiece {
  var x: XQPiece;
  let r0 = (b * P.K + xb) / 16u;
#unroll j QRUNS
  x.q[{{j}}] = xq[xqAt(r0 + {{j}}u * (QRUN / 16u))];
  x.d[{{j}}] = xqd[r0 + {{j}}u * (QRUN / 16u)];
#endunroll
  return x;
}
#endif
#endif

// one thread's partial v of value j into the reduction slots: a sum over its block of
// bl lanes, or (without subgroups) phase 0 stores the upper half of the group's
// lanes, phase 1 adds the lower half's
fn stash(j: u32, v: f32, phase: u32, t: u32, bl: u32, sgs: u32) {
#if SUBGROUPS
  var s = 0.0;
  if (bl == sgs) {
    s = subgroupAdd(v);
  } else { // subgroups wider than a group: a butterfly within the group's lanes
    s = v;
    for (var o = bl / 2u; o > 0u; o >>= 1u) { s += subgroupShuffleXor(s, o); }
  }
  if (t % bl == 0u) { red[j * SLOTS + t / bl] = s; }
#else
  let l = t % LANES;
  let base = j * SLOTS + (t / LANES) * (LANES / 2u);
  if (phase == 0u && l >= LANES / 2u) { red[base + l - LANES / 2u] = v; }
  if (phase == 1u && l < LANES / 2u) { red[base + l] += v; }
#endif
}

// value j of group g: the sum of its lanes' partials
fn total(j: u32, g: u32, bl: u32) -> f32 {
#if SUBGROUPS
  let nb = LANES / bl;
  var s = 0.0;
  for (var i = 0u; i < nb; i++) { s += red[j * SLOTS + g * nb + i]; }
  return s;
#else
  return red[j * SLOTS + g * (LANES / 2u)];
#endif
}

// Every loop over rows (r), batch rows (b) or values is unrolled, so acc and the x
// rows index only by constants and stay in registers.
@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32
#if SUBGROUPS
  , @builtin(subgroup_size) sgs: u32
#endif
) {
#if SUBGROUPS
  let bl = min(sgs, LANES);
#else
  let sgs = 1u;
  let bl = 1u;
#endif
  let g = t / LANES;
  // batch tiles of one column tile are neighbours in dispatch order, so a batch past
  // BATCH rows re-reads each weight row from L2 rather than HBM
  let nb = (P.M + BATCH - 1u) / BATCH;
  let id = wid.x + wid.y * nwg.x;
  let c0 = (id / nb) * OUT; // the workgroup's first output column
  let n0 = c0 + g * OUTG; // the group's
  let m0 = (id % nb) * BATCH;
  var acc: array<f32, NR>;
#if PIECE
  let NP = P.K / QPW;
#if QPF
  // the first trip's pieces go out before x is staged (their latencies overlap), and each
  // trip loads the next trip's pieces before its math (a past-the-end one reads the last
  // piece again)
#unroll u KU
#if SWIGLU
#unroll r ROWS/2
  var f{{u}}_{{r}} = {{QUANT}}_load(0u, P.gRow + min(n0 + {{r}}u, lastRow()), min(t % LANES + {{u}}u * LANES, NP - 1u));
  var fu{{u}}_{{r}} = {{QUANT}}_load(1u, P.uRow + min(n0 + {{r}}u, lastRow()), min(t % LANES + {{u}}u * LANES, NP - 1u));
#endunroll
#else
#unroll r ROWS
  var f{{u}}_{{r}} = {{QUANT}}_load(0u, min(n0 + {{r}}u, lastRow()), min(t % LANES + {{u}}u * LANES, NP - 1u));
#endunroll
#endif
#endunroll
#endif
#endif
#if XWG
#if XQ8
  // every thread quantizes a share of each activation row's runs of 16 (x g with NORM,
  // whose squares it sums first): d = max |x| / 127, q = round(x / d)
  let R16 = P.K / 16u;
#unroll b BATCH
  for (var r = t; r < R16; r += WG) {
    let xi = xRowIndex({{b}}u, m0) * (P.K / 4u) + 4u * r;
    var v = array<vec4<f32>, 4>(X[xi], X[xi + 1u], X[xi + 2u], X[xi + 3u]);
#if NORM
#unroll i 4
    acc[RB + {{b}}u] += dot(v[{{i}}], v[{{i}}]);
    v[{{i}}] *= G[4u * r + {{i}}u];
#endunroll
#endif
    let a = max(max(abs(v[0]), abs(v[1])), max(abs(v[2]), abs(v[3])));
    let d = max(max(a.x, a.y), max(a.z, a.w)) / 127.0;
    let id = select(0.0, 1.0 / d, d > 0.0);
    let q = vec4<u32>(pack4xI8(vec4<i32>(round(v[0] * id))), pack4xI8(vec4<i32>(round(v[1] * id))), pack4xI8(vec4<i32>(round(v[2] * id))), pack4xI8(vec4<i32>(round(v[3] * id))));
    let ones = 0x01010101u;
    let sq = dot4I8Packed(q.x, ones) + dot4I8Packed(q.y, ones) + dot4I8Packed(q.z, ones) + dot4I8Packed(q.w, ones);
    xq[xqAt({{b}}u * R16 + r)] = q;
    xqd[{{b}}u * R16 + r] = vec2<f32>(d, d * f32(sq));
  }
#endunroll
#else
  // every thread stages a share of the BATCH activation rows
  for (var i = t; i < BATCH * (P.K / 4u); i += WG) {
    xs[xsAt(i)] = X[xRowIndex(i / (P.K / 4u), m0) * (P.K / 4u) + i % (P.K / 4u)];
  }
#endif
  workgroupBarrier();
#endif
#if PIECE
  // KU pieces per trip, each LANES pieces apart, as the 8-weight chunks below
  for (var p = t % LANES; p < NP; p += KU * LANES) {
#unroll u KU
    let in{{u}} = p + {{u}}u * LANES < NP;
    let p{{u}} = min(p + {{u}}u * LANES, NP - 1u);
#if QPF
    let pn{{u}} = min(p + (KU + {{u}}u) * LANES, NP - 1u);
#if SWIGLU
#unroll r ROWS/2
    let w{{u}}_{{r}} = f{{u}}_{{r}};
    let u{{u}}_{{r}} = fu{{u}}_{{r}};
    f{{u}}_{{r}} = {{QUANT}}_load(0u, P.gRow + min(n0 + {{r}}u, lastRow()), pn{{u}});
    fu{{u}}_{{r}} = {{QUANT}}_load(1u, P.uRow + min(n0 + {{r}}u, lastRow()), pn{{u}});
#endunroll
#else
#unroll r ROWS
    let w{{u}}_{{r}} = f{{u}}_{{r}};
    f{{u}}_{{r}} = {{QUANT}}_load(0u, min(n0 + {{r}}u, lastRow()), pn{{u}});
#endunroll
#endif
#else
#if SWIGLU
#unroll r ROWS/2
    let w{{u}}_{{r}} = {{QUANT}}_load(0u, P.gRow + min(n0 + {{r}}u, lastRow()), p{{u}});
    let u{{u}}_{{r}} = {{QUANT}}_load(1u, P.uRow + min(n0 + {{r}}u, lastRow()), p{{u}});
#endunroll
#else
#unroll r ROWS
    let w{{u}}_{{r}} = {{QUANT}}_load(0u, min(n0 + {{r}}u, lastRow()), p{{u}});
#endunroll
#endif
#endif
#endunroll
#unroll u KU
    {
      let xb = {{QUANT}}_xbase(p{{u}});
#if XQ8
#unroll b BATCH
      {
        var x = xPieceQ({{b}}u, xb);
        if (!in{{u}}) { x.d = array<vec2<f32>, QRUNS>(); }
#if SWIGLU
#unroll r ROWS/2
        acc[{{r}}u * BATCH + {{b}}u] += {{QUANT}}_dot8(w{{u}}_{{r}}, x.q, x.d);
        acc[(OUTG + {{r}}u) * BATCH + {{b}}u] += {{QUANT}}_dot8(u{{u}}_{{r}}, x.q, x.d);
#endunroll
#else
#unroll r ROWS
        acc[{{r}}u * BATCH + {{b}}u] += {{QUANT}}_dot8(w{{u}}_{{r}}, x.q, x.d);
#endunroll
#endif
      }
#endunroll
#else
#if NORM
      let g = xPieceG(xb);
#endif
#unroll b BATCH
      {
        var x = xPiece({{b}}u, m0, xb);
        if (!in{{u}}) { x = array<vec4<f32>, QX>(); }
#if NORM
#unroll i QRUNS*4
        acc[RB + {{b}}u] += dot(x[{{i}}], x[{{i}}]);
        x[{{i}}] *= g[{{i}}];
#endunroll
#endif
        let sx = runSums(x);
#if SWIGLU
#unroll r ROWS/2
        acc[{{r}}u * BATCH + {{b}}u] += {{QUANT}}_dot(w{{u}}_{{r}}, x, sx);
        acc[(OUTG + {{r}}u) * BATCH + {{b}}u] += {{QUANT}}_dot(u{{u}}_{{r}}, x, sx);
#endunroll
#else
#unroll r ROWS
        acc[{{r}}u * BATCH + {{b}}u] += {{QUANT}}_dot(w{{u}}_{{r}}, x, sx);
#endunroll
#endif
      }
#endunroll
#endif
    }
#endunroll
  }
#else
  let K8 = P.K / 8u;
  // KU chunks of K per trip, each LANES x 8 weights apart: all their weight loads go
  // out first, then one activation row at a time meets them (only the accumulators,
  // the weight chunks and one x chunk are live). A chunk past K reads the last one and
  // zeroes its x, adding exact zeros: sums and their order are those of KU = 1.
  for (var k8 = t % LANES; k8 < K8; k8 += KU * LANES) {
#unroll u KU
    let in{{u}} = k8 + {{u}}u * LANES < K8;
    let k{{u}} = min(k8 + {{u}}u * LANES, K8 - 1u);
#if SWIGLU
#unroll r ROWS/2
    let w{{u}}_{{r}} = load8(P.gRow + min(n0 + {{r}}u, lastRow()), k{{u}});
    let u{{u}}_{{r}} = load8up(P.uRow + min(n0 + {{r}}u, lastRow()), k{{u}});
#endunroll
#else
#unroll r ROWS
    let w{{u}}_{{r}} = load8(min(n0 + {{r}}u, lastRow()), k{{u}});
#endunroll
#endif
#endunroll
#unroll u KU
    {
#if NORM
      let g0 = G[2u * k{{u}}];
      let g1 = G[2u * k{{u}} + 1u];
#endif
#unroll b BATCH
      {
        var x = xRow({{b}}u, m0, k{{u}});
        if (!in{{u}}) { x = array<vec4<f32>, 2>(vec4<f32>(0.0), vec4<f32>(0.0)); }
#if NORM
        acc[RB + {{b}}u] += dot(x[0], x[0]) + dot(x[1], x[1]);
        x[0] *= g0;
        x[1] *= g1;
#endif
#if SWIGLU
#unroll r ROWS/2
        acc[{{r}}u * BATCH + {{b}}u] += dot(w{{u}}_{{r}}[0], x[0]) + dot(w{{u}}_{{r}}[1], x[1]);
        acc[(OUTG + {{r}}u) * BATCH + {{b}}u] += dot(u{{u}}_{{r}}[0], x[0]) + dot(u{{u}}_{{r}}[1], x[1]);
#endunroll
#else
#unroll r ROWS
        acc[{{r}}u * BATCH + {{b}}u] += dot(w{{u}}_{{r}}[0], x[0]) + dot(w{{u}}_{{r}}[1], x[1]);
#endunroll
#endif
      }
#endunroll
    }
#endunroll
  }
#endif
#if SUBGROUPS
  let phases = 1u;
#else
  let phases = 2u;
#endif
  for (var ph = 0u; ph < phases; ph++) {
#unroll j ROWS*BATCH
    stash({{j}}u, acc[{{j}}u], ph, t, bl, sgs);
#endunroll
#if NORM
#unroll b BATCH
    stash(RB + {{b}}u, acc[RB + {{b}}u], ph, t, bl, sgs);
#endunroll
#endif
    workgroupBarrier();
  }
#if !SUBGROUPS
  let l = t % LANES;
  let base = g * (LANES / 2u);
  for (var s = LANES / 4u; s > 0u; s >>= 1u) {
    if (l < s) {
      for (var j = 0u; j < NR; j++) { red[j * SLOTS + base + l] += red[j * SLOTS + base + l + s]; }
    }
    workgroupBarrier();
  }
#endif
  // output o of the workgroup: column c0 + o / BATCH (group o / (OUTG * BATCH)), row m0 + o % BATCH
  for (var o = t; o < OUT * BATCH; o += WG) {
    let og = o / (OUTG * BATCH);
    let j = o % (OUTG * BATCH);
    var inv = 1.0;
#if NORM
#if XQ8
    // the staging threads of every group took a share of the squares
    var ss = 0.0;
    for (var g2 = 0u; g2 < NG; g2++) { ss += total(RB + j % BATCH, g2, bl); }
    inv = inverseSqrt(ss / f32(P.K) + P.eps);
#else
    inv = inverseSqrt(total(RB + j % BATCH, og, bl) / f32(P.K) + P.eps);
#endif
#endif
#if SWIGLU
    let gv = total(j, og, bl) * inv;
    let u = total(OUTG * BATCH + j, og, bl) * inv;
    store(o, c0, m0, gv / (1.0 + exp(-gv)) * u);
#else
    store(o, c0, m0, total(j, og, bl) * inv);
#endif
  }
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
