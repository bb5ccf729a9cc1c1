// RMSNorm: Y[j, :] = X[r, :] / sqrt(mean(X[r, :]^2) + eps) * w, with r = j, or
// r = rows[j] when GATHER (picks the last token of each sequence before lm_head).
struct Params { D: u32, eps: f32, M: u32, }
@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
#if GATHER
@group(0) @binding(3) var<storage, read> rows: array<u32>;
@group(0) @binding(4) var<uniform> P: Params;
#else
@group(0) @binding(3) var<uniform> P: Params;
#endif

const WG = 256u;
var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let j = wid.x + wid.y * 65535u;
  if (j >= P.M) { return; }
#if GATHER
  let r = rows[j];
#else
  let r = j;
#endif
  var s = 0.0;
  for (var i = t; i < P.D; i += WG) { let x = X[r * P.D + i]; s += x * x; }
  red[t] = s;
  workgroupBarrier();
  for (var k = WG / 2u; k > 0u; k >>= 1u) {
    if (t < k) { red[t] += red[t + k]; }
    workgroupBarrier();
  }
  let inv = inverseSqrt(red[0] / f32(P.D) + P.eps);
  for (var i = t; i < P.D; i += WG) { Y[j * P.D + i] = X[r * P.D + i] * inv * w[i]; }
}
