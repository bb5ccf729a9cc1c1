// The second half of a split-K matmul (gemm_mma.wgsl with SPLITK): Y[m, colOff + n]
// (+)= sum over z of part[z][m][n] (+ B[colOff + n]), one thread an output, the splits
// summed in order so the result does not depend on scheduling.
struct Params { N: u32, M: u32, ldy: u32, colOff: u32, splits: u32, }
@group(0) @binding(#) var<storage, read> part: array<f32>;
@group(0) @binding(#) var<storage, read_write> Y: array<f32>;
#if BIAS
@group(0) @binding(#) var<storage, read> B: array<f32>;
#endif
@group(0) @binding(#) var<uniform> P: Params;

#include matmul_out

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let n = gid.x;
  let m = gid.y;
  if (n >= P.N || m >= P.M) { return; }
  var s = 0.0;
  for (var z = 0u; z < P.splits; z++) { s += part[(z * P.M + m) * P.N + n]; }
  storeOut(m * P.ldy + P.colOff + n, n, s);
}
