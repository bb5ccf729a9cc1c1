// The epilogue of a split-K gemv_batch.wgsl: Y[m, colOff + n] (+)= inv * sum_s Pt[s, m, n] (+ B),
// inv = inverseSqrt(mean of x[m]^2 + eps) from the splits' sums of squares (NORM), else 1.
// One thread per output, n-fastest.
struct Params { N: u32, M: u32, ldy: u32, colOff: u32, KS: u32, K: u32, eps: f32, }

@group(0) @binding(#) var<storage, read> Pt: array<f32>;
@group(0) @binding(#) var<storage, read_write> Y: array<f32>;
#if BIAS
@group(0) @binding(#) var<storage, read> B: array<f32>;
#endif
@group(0) @binding(#) var<uniform> P: Params;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let n = gid.x;
  let m = gid.y;
  if (n >= P.N || m >= P.M) { return; }
  var s = 0.0;
  for (var i = 0u; i < P.KS; i++) { s += Pt[(i * P.M + m) * P.N + n]; }
  var out = s;
#if NORM
  var ss = 0.0;
  for (var i = 0u; i < P.KS; i++) { ss += Pt[P.KS * P.M * P.N + i * P.M + m]; }
  out *= inverseSqrt(ss / f32(P.K) + P.eps);
#endif
#if BIAS
  out += B[P.colOff + n];
#endif
  let yi = m * P.ldy + P.colOff + n;
#if RESIDUAL
  out += Y[yi];
#endif
  Y[yi] = out;
}
