// Embedding gather for one row shard of the table: X[m, :] = f32(E[tok[m] - rowStart, :])
// for tokens in [rowStart, rowStart + rowCount). E: f16 pairs as u32, D % 2 == 0.
struct Params { D: u32, M: u32, rowStart: u32, rowCount: u32, tokOffset: u32, }
@group(0) @binding(0) var<storage, read> E: array<u32>;
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
  X[m * half + p] = unpack2x16float(E[(id - P.rowStart) * half + p]);
}
