// Compaction: each move copies a surviving key's K, V, position and score from a
// slot past the head's new length into an evicted slot before it. Sources and
// destinations never overlap, so moves run in parallel.
struct Params { nMoves: u32, half: u32, }
@group(0) @binding(0) var<storage, read> moves: array<vec2<u32>>; // (src phys slot, dst phys slot)
@group(0) @binding(1) var<storage, read_write> Kp: array<u32>;
@group(0) @binding(2) var<storage, read_write> Vp: array<u32>;
@group(0) @binding(3) var<storage, read_write> posPool: array<u32>;
@group(0) @binding(4) var<storage, read_write> scorePool: array<f32>;
@group(0) @binding(5) var<uniform> P: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let p = gid.x;
  let m = gid.y + gid.z * nwg.y;
  if (p >= P.half || m >= P.nMoves) { return; }
  let mv = moves[m];
  Kp[mv.y * P.half + p] = Kp[mv.x * P.half + p];
  Vp[mv.y * P.half + p] = Vp[mv.x * P.half + p];
  if (p == 0u) {
    posPool[mv.y] = posPool[mv.x];
    scorePool[mv.y] = scorePool[mv.x];
  }
}
