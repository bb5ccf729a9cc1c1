// Decode-batch matmul on subgroup matrices (tensor cores): Y[m, colOff + n] (+)=
// sum_k X[m, k] * W[n, k] (+ B[colOff + n]) for M <= 16 TM rows.
// W: f16 [N, K], X: f32 [M, K]; N % 16 == 0, K % 16 == 0.
//
// A few rows make this a stream over the weights, which gemm_mma's shared tiles slow
// down (every weight byte goes global -> registers -> workgroup memory -> matrix, a
// barrier a K step). Here each of the 4 subgroups owns NB blocks of 16 columns and
// loads its right matrices straight from W (16 columns x 16 K, column-major at stride K,
// 32 bytes a column), KU K steps in flight; only X, small and shared by all four, goes
// through workgroup memory, as f16, KC of K at a time (NB = 2 halves X's reads per
// weight byte). With SPLITK workgroup z sums
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
const NB = {{NB}}u;       // 16-column blocks a subgroup owns: each X matrix loaded serves NB products
const KU = {{KU}}u;       // 16-wide K steps of W loaded ahead of their products
const BN = NSG * NB * 16u;
const NT = {{WG}}u;
const KC = 256u;          // K staged per round
const LDX = KC + 8u;      // f16 row stride of the staged X (padded against bank conflicts)

var<workgroup> xs: array<f16, BM * LDX>;
var<workgroup> cs: array<f32, NSG * 256u>;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32,
        @builtin(subgroup_id) sg: u32, @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) sgs: u32) {
  // a block past N loads the last block instead (matrix loads stay in uniform
  // control flow) and writes nothing
  #unroll b NB
  let n{{b}} = wid.y * BN + (sg * NB + {{b}}u) * 16u;
  let w{{b}} = select(P.N - 16u, n{{b}}, n{{b}} + 16u <= P.N) * P.K;
  #endunroll
#if SPLITK
  let kBeg = wid.z * P.kSplit;
  let kEnd = min(P.K, kBeg + P.kSplit);
#else
  let kBeg = 0u;
  let kEnd = P.K;
#endif
  var acc: array<subgroup_matrix_result<f32, 16, 16>, TM * NB>;   // [row tile i][column block b]

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
    for (; k + KU * 16u <= c1; k += KU * 16u) {
      #unroll u KU
      #unroll b NB
      let r{{b}}_{{u}} = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>(&W, w{{b}} + k + {{u}}u * 16u, true, P.K);
      #endunroll
      #endunroll
      #unroll u KU
      #unroll i TM
      let x{{u}}_{{i}} = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>>(&xs, {{i}}u * 16u * LDX + k - c0 + {{u}}u * 16u, false, LDX);
      #unroll b NB
      acc[{{i}}u * NB + {{b}}u] = subgroupMatrixMultiplyAccumulate(x{{u}}_{{i}}, r{{b}}_{{u}}, acc[{{i}}u * NB + {{b}}u]);
      #endunroll
      #endunroll
      #endunroll
    }
    for (; k < c1; k += 16u) {
      #unroll i TM
      let x{{i}} = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>>(&xs, {{i}}u * 16u * LDX + k - c0, false, LDX);
      #unroll b NB
      acc[{{i}}u * NB + {{b}}u] = subgroupMatrixMultiplyAccumulate(x{{i}}, subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>(&W, w{{b}} + k, true, P.K), acc[{{i}}u * NB + {{b}}u]);
      #endunroll
      #endunroll
    }
    workgroupBarrier();
  }

  // epilogue: each 16 x 16 result through this subgroup's slot of cs
  let s0 = sg * 256u;
  #unroll i TM
  #unroll b NB
  subgroupMatrixStore(&cs, s0, acc[{{i}}u * NB + {{b}}u], false, 16u);
  workgroupBarrier();
  for (var e = lane; e < 256u; e += sgs) {
    let m = {{i}}u * 16u + e / 16u;
    let n = n{{b}} + e % 16u;
#if SPLITK
    if (n{{b}} + 16u <= P.N && m < P.M) { Y[(wid.z * P.M + m) * P.N + n] = cs[s0 + e]; }
#else
    if (n{{b}} + 16u <= P.N && m < P.M) { storeOut(m * P.ldy + P.colOff + n, n, cs[s0 + e]); }
#endif
  }
  workgroupBarrier();
  #endunroll
  #endunroll
}
