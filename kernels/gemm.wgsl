// Prefill GEMM: Y[m, colOff + n] (+)= sum_k X[m, k] * W[n, k] (+ B[colOff + n]).
// W: f16 [N, K] (native f16 or packed u32 pairs), X: f32 [M, K], K % 8 == 0.
// 64x64 output tile per workgroup, 16x16 threads each owning a 4x4 register tile,
// K in steps of 16 staged through workgroup memory. f32 accumulators.
struct Params { K: u32, N: u32, M: u32, ldy: u32, colOff: u32, }

#if F16
@group(0) @binding(0) var<storage, read> W: array<vec4<f16>>;
#else
@group(0) @binding(0) var<storage, read> W: array<vec2<u32>>;
#endif
@group(0) @binding(1) var<storage, read> X: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
#if BIAS
@group(0) @binding(3) var<storage, read> B: array<f32>;
@group(0) @binding(4) var<uniform> P: Params;
#else
@group(0) @binding(3) var<uniform> P: Params;
#endif

const BM = 64u;
const BN = 64u;
const BK = 16u;

var<workgroup> As: array<f32, BK * BM>; // [k][m]
var<workgroup> Bs: array<f32, BK * BN>; // [k][n]

fn load4w(i: u32) -> vec4<f32> {
#if F16
  return vec4<f32>(W[i]);
#else
  let u = W[i];
  return vec4<f32>(unpack2x16float(u.x), unpack2x16float(u.y));
#endif
}

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
      if (n0 + lr < P.N) { w = load4w(((n0 + lr) * P.K + k) / 4u); }
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
      let yi = m * P.ldy + P.colOff + n;
      var out = acc[i][j];
#if BIAS
      out += B[P.colOff + n];
#endif
#if RESIDUAL
      out += Y[yi];
#endif
      Y[yi] = out;
    }
  }
}
