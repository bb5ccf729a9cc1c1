// SwiGLU: A[m, f] = silu(GU[m, f]) * GU[m, F + f] for f < F, and 0 for the padding
// columns F <= f < Fp that keep the down projection's K a multiple of 8.
struct Params { M: u32, F: u32, Fp: u32, }
@group(0) @binding(0) var<storage, read> GU: array<f32>;
@group(0) @binding(1) var<storage, read_write> A: array<f32>;
@group(0) @binding(2) var<uniform> P: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let f = gid.x;
  let m = gid.y;
  if (f >= P.Fp || m >= P.M) { return; }
  var out = 0.0;
  if (f < P.F) {
    let g = GU[m * 2u * P.F + f];
    let u = GU[m * 2u * P.F + P.F + f];
    out = g / (1.0 + exp(-g)) * u;
  }
  A[m * P.Fp + f] = out;
}
