// Decode-batch matmul on subgroup matrices (tensor cores): Y[m, colOff + n] (+)=
// sum_k X[m, k] * W[n, k] (+ B[colOff + n]) for M <= 16 TM rows.
// W: f16 [N, K], X: f32 [M, K]; N % 16 == 0, K % 16 == 0.
//
// A few rows make this a stream over the weights, which gemm_mma's shared tiles slow
// down (every weight byte goes global -> registers -> workgroup memory -> matrix, a
// barrier a K step). Here each of the 4 subgroups owns 16 columns and loads its
// right matrices straight from W (16 columns x 16 K, column-major at stride K, 32
// bytes a column), four K steps in flight; only X, small and shared by all four, goes
// through workgroup memory, as f16, KC of K at a time. With SPLITK workgroup z sums
// K range [z * kSplit, (z + 1) * kSplit) into partial tiles Y[z][M][N] that
// gemm_splitk_sum adds up (with bias and residual).
#if SPLITK
struct Params { K: u32, N: u32, M: u32, ldy: u32, colOff: u32, kSplit: u32, }
#else
struct Params { K: u32, N: u32, M: u32, ldy: u32, colOff: u32, }
#endif

@group(0) @binding(#) var<storage, read> W: array<f16>;
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
const BM = TM * 16u;
const NSG = 4u;
const BN = NSG * 16u;
const NT = {{WG}}u;
const KC = 256u;          // K staged per round
const LDX = KC + 8u;      // f16 row stride of the staged X (padded against bank conflicts)

var<workgroup> xs: array<f16, BM * LDX>;
var<workgroup> cs: array<f32, NSG * 256u>;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32,
        @builtin(subgroup_id) sg: u32, @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) sgs: u32) {
  let n0 = wid.y * BN + sg * 16u;
  // a subgroup past N loads the last block instead (matrix loads stay in uniform
  // control flow) and writes nothing
  let live = n0 + 16u <= P.N;
  let nb = select(P.N - 16u, n0, live);
#if SPLITK
  let kBeg = wid.z * P.kSplit;
  let kEnd = min(P.K, kBeg + P.kSplit);
#else
  let kBeg = 0u;
  let kEnd = P.K;
#endif
  var acc: array<subgroup_matrix_result<f32, 16, 16>, TM>;
  let wBase = nb * P.K;

  for (var c0 = kBeg; c0 < kEnd; c0 += KC) {
    let c1 = min(kEnd, c0 + KC);
    // X rows [0, BM) x [c0, c1) as f16, zeros past M and c1
    for (var e = t; e < BM * (KC / 4u); e += NT) {
      let r = e / (KC / 4u);
      let c = (e % (KC / 4u)) * 4u;
      var v = vec4<f32>(0.0);
      if (r < P.M && c0 + c < c1) { v = X[(r * P.K + c0 + c) / 4u]; }
      let h = vec4<f16>(v);
      let o = r * LDX + c;
      xs[o] = h.x; xs[o + 1u] = h.y; xs[o + 2u] = h.z; xs[o + 3u] = h.w;
    }
    workgroupBarrier();
    var k = c0;
    for (; k + 64u <= c1; k += 64u) {
      #unroll u 4
      let r{{u}} = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>(&W, wBase + k + {{u}}u * 16u, true, P.K);
      #endunroll
      #unroll u 4
      #unroll i TM
      acc[{{i}}] = subgroupMatrixMultiplyAccumulate(subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>>(&xs, {{i}}u * 16u * LDX + k - c0 + {{u}}u * 16u, false, LDX), r{{u}}, acc[{{i}}]);
      #endunroll
      #endunroll
    }
    for (; k < c1; k += 16u) {
      let r = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>(&W, wBase + k, true, P.K);
      #unroll i TM
      acc[{{i}}] = subgroupMatrixMultiplyAccumulate(subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>>(&xs, {{i}}u * 16u * LDX + k - c0, false, LDX), r, acc[{{i}}]);
      #endunroll
    }
    workgroupBarrier();
  }

  // epilogue: each 16 x 16 result through this subgroup's slot of cs
  let s0 = sg * 256u;
  #unroll i TM
  subgroupMatrixStore(&cs, s0, acc[{{i}}], false, 16u);
  workgroupBarrier();
  for (var e = lane; e < 256u; e += sgs) {
    let m = {{i}}u * 16u + e / 16u;
    let n = n0 + e % 16u;
#if SPLITK
    if (live && m < P.M) { Y[(wid.z * P.M + m) * P.N + n] = cs[s0 + e]; }
#else
    if (live && m < P.M) { storeOut(m * P.ldy + P.colOff + n, n, cs[s0 + e]); }
#endif
  }
  workgroupBarrier();
  #endunroll
}
