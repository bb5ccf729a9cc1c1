// Prefill (and large-batch decode) GEMM on subgroup matrices, i.e. tensor cores:
// Y[m, colOff + n] (+)= sum_k X[m, k] * W[n, k] (+ B[colOff + n]).
// W: f16 [N, K], X: f32 [M, K] (rounded to f16 as it is staged), K % 8 == 0;
// f16 x f16 products, f32 accumulators (subgroup_matrix_result<f32>).
//
// A workgroup computes a BM x BN output tile with SG_ROWS x SG_COLS subgroups, each
// owning TM x TN result matrices of 16 x 16. K runs in steps of BK (32 or 64) through
// workgroup memory: X rows as the left matrix ([m][k], row-major) and W rows as the
// right one ([n][k] is W^T column-major), rows padded by 8 halves against bank
// conflicts. With DB the tiles are double-buffered: the next K step's global loads are
// in registers while the tensor cores work on the current one, one barrier a step.
// The epilogue goes through workgroup memory, one 16 x 16 result per subgroup at a
// time, so bias and residual are added as in the other matmuls (matmul_out).
//
// SPLITK (decode batches: a few rows give too few output tiles to keep the GPU's memory
// busy): workgroup z sums only K range [z * kSplit, (z + 1) * kSplit) and writes its
// partial tile to Y[z][M][N]; gemm_splitk_sum adds the partials, bias and residual.
#if SPLITK
struct Params { K: u32, N: u32, M: u32, ldy: u32, colOff: u32, kSplit: u32, }
#else
struct Params { K: u32, N: u32, M: u32, ldy: u32, colOff: u32, }
#endif

@group(0) @binding(#) var<storage, read> W: array<vec4<f16>>;
@group(0) @binding(#) var<storage, read> X: array<vec4<f32>>;
@group(0) @binding(#) var<storage, read_write> Y: array<f32>;
#if BIAS
@group(0) @binding(#) var<storage, read> B: array<f32>;
#endif
@group(0) @binding(#) var<uniform> P: Params;

#if !SPLITK
#include matmul_out
#endif

const TM = {{TM}}u;
const TN = {{TN}}u;
const BM = {{SG_ROWS}}u * TM * 16u;
const BN = {{SG_COLS}}u * TN * 16u;
const BK = {{BK}}u;
const LDS = BK + 8u;
const NT = {{WG}}u;
/** vec4 loads of one K step per thread: X tile (BM * BK / 4 / NT), then W tile (BN * BK / 4 / NT) */
const XL = {{XL}}u;
const WL = {{WL}}u;
#if DB
const NBUF = 2u;
#else
const NBUF = 1u;
#endif

var<workgroup> As: array<f16, NBUF * BM * LDS>;
var<workgroup> Bs: array<f16, NBUF * BN * LDS>;
var<workgroup> Cs: array<f32, {{SG_ROWS}} * {{SG_COLS}} * 256>;

/** the e-th vec4 of the X tile at k0 (zero past M and K) */
fn loadX(m0: u32, k0: u32, e: u32) -> vec4<f32> {
  let r = e / (BK / 4u);
  let c = k0 + (e % (BK / 4u)) * 4u;
  if (m0 + r < P.M && c < P.K) { return X[((m0 + r) * P.K + c) / 4u]; }
  return vec4<f32>(0.0);
}

fn loadW(n0: u32, k0: u32, e: u32) -> vec4<f16> {
  let r = e / (BK / 4u);
  let c = k0 + (e % (BK / 4u)) * 4u;
  if (n0 + r < P.N && c < P.K) { return W[((n0 + r) * P.K + c) / 4u]; }
  return vec4<f16>(0.0);
}

fn storeX(buf: u32, e: u32, v: vec4<f32>) {
  let o = buf * BM * LDS + (e / (BK / 4u)) * LDS + (e % (BK / 4u)) * 4u;
  let h = vec4<f16>(v);
  As[o] = h.x; As[o + 1u] = h.y; As[o + 2u] = h.z; As[o + 3u] = h.w;
}

fn storeW(buf: u32, e: u32, h: vec4<f16>) {
  let o = buf * BN * LDS + (e / (BK / 4u)) * LDS + (e % (BK / 4u)) * 4u;
  Bs[o] = h.x; Bs[o + 1u] = h.y; Bs[o + 2u] = h.z; Bs[o + 3u] = h.w;
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32,
        @builtin(subgroup_id) sg: u32, @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) sgs: u32) {
  let m0 = wid.x * BM;
  let n0 = wid.y * BN;
#if SPLITK
  let kBeg = wid.z * P.kSplit;
  let kEnd = min(P.K, kBeg + P.kSplit);
#else
  let kBeg = 0u;
  let kEnd = P.K;
#endif
  // this subgroup's corner inside the tile
  let sm = (sg / {{SG_COLS}}u) * TM * 16u;
  let sn = (sg % {{SG_COLS}}u) * TN * 16u;
  var acc: array<subgroup_matrix_result<f32, 16, 16>, TM * TN>;
  var xr: array<vec4<f32>, XL>;
  var wr: array<vec4<f16>, WL>;

#if DB
  #unroll i XL
  storeX(0u, t + {{i}}u * NT, loadX(m0, kBeg, t + {{i}}u * NT));
  #endunroll
  #unroll i WL
  storeW(0u, t + {{i}}u * NT, loadW(n0, kBeg, t + {{i}}u * NT));
  #endunroll
  workgroupBarrier();
  var buf = 0u;
#endif
  for (var k0 = kBeg; k0 < kEnd; k0 += BK) {
#if DB
    let next = k0 + BK;
    if (next < kEnd) {
      #unroll i XL
      xr[{{i}}] = loadX(m0, next, t + {{i}}u * NT);
      #endunroll
      #unroll i WL
      wr[{{i}}] = loadW(n0, next, t + {{i}}u * NT);
      #endunroll
    }
    let a0 = buf * BM * LDS;
    let b0 = buf * BN * LDS;
#else
    #unroll i XL
    storeX(0u, t + {{i}}u * NT, loadX(m0, k0, t + {{i}}u * NT));
    #endunroll
    #unroll i WL
    storeW(0u, t + {{i}}u * NT, loadW(n0, k0, t + {{i}}u * NT));
    #endunroll
    workgroupBarrier();
    let a0 = 0u;
    let b0 = 0u;
#endif
    #unroll kk BK/16
    {
      #unroll i TM
      var l{{i}} = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>>(&As, a0 + (sm + {{i}}u * 16u) * LDS + {{kk}}u * 16u, false, LDS);
      #endunroll
      #unroll j TN
      var r{{j}} = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>(&Bs, b0 + (sn + {{j}}u * 16u) * LDS + {{kk}}u * 16u, true, LDS);
      #endunroll
      #unroll i TM
      #unroll j TN
      acc[{{i}}u * TN + {{j}}u] = subgroupMatrixMultiplyAccumulate(l{{i}}, r{{j}}, acc[{{i}}u * TN + {{j}}u]);
      #endunroll
      #endunroll
    }
    #endunroll
#if DB
    if (next < kEnd) {
      let nb = 1u - buf;
      #unroll i XL
      storeX(nb, t + {{i}}u * NT, xr[{{i}}]);
      #endunroll
      #unroll i WL
      storeW(nb, t + {{i}}u * NT, wr[{{i}}]);
      #endunroll
      buf = nb;
    }
    workgroupBarrier();
#else
    workgroupBarrier();
#endif
  }

  // epilogue: each 16 x 16 result through this subgroup's slot of Cs
  let c0 = sg * 256u;
  #unroll i TM
  #unroll j TN
  subgroupMatrixStore(&Cs, c0, acc[{{i}}u * TN + {{j}}u], false, 16u);
  workgroupBarrier();
  for (var e = lane; e < 256u; e += sgs) {
    let m = m0 + sm + {{i}}u * 16u + e / 16u;
    let n = n0 + sn + {{j}}u * 16u + e % 16u;
#if SPLITK
    if (m < P.M && n < P.N) { Y[(wid.z * P.M + m) * P.N + n] = Cs[c0 + e]; }
#else
    if (m < P.M && n < P.N) { storeOut(m * P.ldy + P.colOff + n, n, Cs[c0 + e]); }
#endif
  }
  workgroupBarrier();
  #endunroll
  #endunroll
}
