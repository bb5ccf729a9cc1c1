// Embedding gather for one row shard of the table: X[m, :] = f32(E[tok[m] - rowStart, :])
// for tokens in [rowStart, rowStart + rowCount). E: f16 pairs as u32, D % 2 == 0, or,
// with QUANT, block-quantized rows (kernels/quant.wgsl).
struct Params { D: u32, M: u32, rowStart: u32, rowCount: u32, tokOffset: u32, }
#if QUANT
@group(0) @binding(0) var<storage, read> W: array<u32>;
fn qw(b: u32, i: u32) -> u32 { return W[i]; }
#include quant
#else
@group(0) @binding(0) var<storage, read> E: array<u32>;
#endif
@group(0) @binding(1) var<storage, read> tok: array<u32>;
@group(0) @binding(2) var<storage, read_write> X: array<vec2<f32>>;
@group(0) @binding(3) var<uniform> P: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let p = gid.x;
  let m = gid.y;
  let half = P.D / 2u;
  if (p >= half || m >= P.M) { return; }
  let id = tok[P.tokOffset + m];
  if (id < P.rowStart || id >= P.rowStart + P.rowCount) { return; }
#if QUANT
  let w = qload8(0u, id - P.rowStart, p / 4u, P.D)[(p / 2u) % 2u];
  X[m * half + p] = select(w.zw, w.xy, p % 2u == 0u);
#else
  X[m * half + p] = unpack2x16float(E[(id - P.rowStart) * half + p]);
#endif
}
